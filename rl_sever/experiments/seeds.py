"""`rl-sever train ALGO ENV --seeds 0-4`: the same training command once per seed, each a run
folder of its own, in parallel processes (at most `jobs` at once), then one summary.

The seeds' run folders go into one group folder, `<logdir>/<env>__<algo>__seeds-<spec>__<time>/`,
with each seed's output in `seed-<N>.log` beside them; `rl-sever report` takes the group folder.
A seed that fails does not stop the others: the summary names it with the last line it printed.
Ctrl-C (or SIGTERM) is passed on to every running seed, which checkpoints and says how to resume.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from rl_sever.core import stats
from rl_sever.core.rundir import unique_dir
from rl_sever.errors import ConfigError

MAX_SEEDS = 1000
EXIT_FAILED = 1


def parse_seeds(text: str) -> list[int]:
    """"0-4" -> [0, 1, 2, 3, 4]; "0,3,7" and "1-3,9" as they read."""
    seeds: list[int] = []
    for part in str(text).split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if m is None:
            raise ConfigError(f"--seeds takes seeds like 0-4 or 0,3,7, got {text!r}")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo:
            raise ConfigError(f"--seeds range {part.strip()} goes down; write it as {hi}-{lo}")
        seeds.extend(range(lo, hi + 1))
    if len(seeds) != len(set(seeds)):
        raise ConfigError(f"--seeds {text} names a seed twice")
    if len(seeds) > MAX_SEEDS:
        raise ConfigError(f"--seeds {text} names {len(seeds)} seeds; at most {MAX_SEEDS}")
    return seeds


def child_argv(argv: list[str], drop: dict[str, bool]) -> list[str]:
    """`argv` without the options in `drop` (option -> whether it takes a value)."""
    out, i = [], 0
    while i < len(argv):
        arg = argv[i]
        name = arg.split("=", 1)[0]
        if name in drop:
            i += 1 + (drop[name] and "=" not in arg)
            continue
        out.append(arg)
        i += 1
    return out


@dataclass
class SeedRun:
    seed: int
    log: Path
    process: subprocess.Popen | None = None
    code: int | None = None
    started: float = 0.0
    ended: float = 0.0

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def find(self, pattern: str) -> str | None:
        found = re.findall(pattern, self.output(), flags=re.MULTILINE)
        return found[-1] if found else None

    def last_line(self) -> str:
        lines = [line for line in self.output().splitlines() if line.strip()]
        return lines[-1].strip() if lines else "(no output)"


def group_folder(logdir: str | Path, env_id: str, algo: str, spec: str) -> Path:
    return unique_dir(logdir, f"{env_id}__{algo}__seeds-{re.sub(r'[^0-9-]+', '_', spec)}")


def run_seeds(argv: list[str], seeds: list[int], *, jobs: int, group: Path,
              threads: int | None = None, poll_s: float = 0.2) -> list[SeedRun]:
    """Run `rl-sever train` + `argv` once per seed (`--seed N --logdir group`), at most `jobs`
    at a time; returns every seed's run, finished."""
    base = [sys.executable, "-m", "rl_sever.cli", "train", *argv, "--logdir", str(group),
            "--no-progress"]
    if threads:
        base += ["--set", f"intra_op_threads={threads}"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    pending = [SeedRun(s, group / f"seed-{s}.log") for s in seeds]
    running: list[SeedRun] = []
    done: list[SeedRun] = []
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        while pending or running:
            while pending and len(running) < jobs:
                run = pending.pop(0)
                with open(run.log, "wb") as log:
                    # A session of its own: a terminal's Ctrl-C reaches it once, through us.
                    run.process = subprocess.Popen([*base, "--seed", str(run.seed)], stdout=log,
                                                   stderr=subprocess.STDOUT, env=env,
                                                   start_new_session=True)
                run.started = time.perf_counter()
                running.append(run)
            for run in list(running):
                code = run.process.poll()
                if code is not None:
                    run.code, run.ended = code, time.perf_counter()
                    running.remove(run)
                    done.append(run)
                    print(f"seed {run.seed}: {describe(run)}", flush=True)
            time.sleep(poll_s)
    except KeyboardInterrupt:
        for run in running:  # each seed checkpoints and prints its resume command
            run.process.send_signal(signal.SIGINT)
        for run in running:
            run.code, run.ended = run.process.wait(), time.perf_counter()
            done.append(run)
        for run in pending:
            done.append(run)
        _print_summary(sorted(done, key=lambda r: r.seed), group)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    return sorted(done, key=lambda r: r.seed)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def describe(run: SeedRun) -> str:
    if run.process is None:
        return "not started"
    if run.code == 0:
        final = run.find(r"^final evaluation: mean return (\S+)")
        return f"done in {run.ended - run.started:.0f} s" + (
            f", final evaluation {final}" if final else "")
    if run.code in (130, -signal.SIGINT):
        return "interrupted; " + (run.find(r"^resume with: (.+)$") or "no checkpoint")
    return f"failed (exit {run.code}): {run.last_line()}"


def _print_summary(runs: list[SeedRun], group: Path) -> None:
    print(f"\n{len(runs)} seeds in {group}:")
    for run in runs:
        folder = run.find(r"^run folder: (.+)$")
        where = Path(folder).name if folder else f"log {run.log.name}"
        print(f"  seed {run.seed:<4} {describe(run)}  ({where})")
    finals = [float(v) for r in runs if r.code == 0
              and (v := r.find(r"^final evaluation: mean return (\S+)")) is not None]
    if len(finals) > 1:
        iqm, low, high = stats.interval([finals], "iqm")
        mean, mlow, mhigh = stats.interval([finals], "mean")
        print(f"final evaluation over {len(finals)} seeds: IQM {iqm:.2f} [{low:.2f}, {high:.2f}], "
              f"mean {mean:.2f} [{mlow:.2f}, {mhigh:.2f}] (95% bootstrap CI)")
    print(f"report: rl-sever report {group}")


def train_seeds(argv: list[str], spec: str, *, algo: str, env_id: str, jobs: int | None,
                logdir: str | None, set_threads: bool = True) -> int:
    """The `--seeds` form of `rl-sever train`; exit 0 when every seed succeeded, else 1.
    `set_threads`: give each process cores / jobs intra-op threads (the config leaves them
    at auto)."""
    seeds = parse_seeds(spec)
    cores = os.cpu_count() or 1
    if jobs is not None and jobs < 1:
        raise ConfigError(f"--jobs must be positive, got {jobs}")
    jobs = min(jobs or cores, len(seeds))
    threads = max(1, cores // jobs) if jobs > 1 and set_threads else None
    group = group_folder(logdir or "runs", env_id, algo, spec)
    print(f"training {len(seeds)} seeds of {algo} on {env_id}, {jobs} at a time, in {group}",
          flush=True)
    runs = run_seeds(argv, seeds, jobs=jobs, group=group, threads=threads)
    _print_summary(runs, group)
    failed = [r for r in runs if r.code != 0]
    if failed:
        print(f"{len(failed)} of {len(runs)} seeds did not finish: "
              + ", ".join(str(r.seed) for r in failed), file=sys.stderr)
        return EXIT_FAILED
    return 0
