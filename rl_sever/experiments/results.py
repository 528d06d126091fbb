"""The results of run folders as `rl-sever report` reads them: each run's evaluations (its
evaluations.json, or the eval/mean_reward scalars of runs made before it existed) grouped into
cases: runs of one algorithm on one env, or of one folder given (`by="folder"`: seeds of a
tuned configuration beside seeds of a preset).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rl_sever.core.curves import read_scalars
from rl_sever.core.evaluations import BEST_DIR, read_best, read_records
from rl_sever.core.rundir import CONFIG_FILE, read_config
from rl_sever.errors import ConfigError, RLSeverError


@dataclass
class RunResult:
    run_dir: Path
    algo: str
    env_id: str
    seed: int
    steps: np.ndarray
    """Env steps of the evaluations."""
    returns: np.ndarray
    """Mean return of each evaluation."""

    @property
    def final(self) -> float:
        return float(self.returns[-1])

    @property
    def best(self) -> float:
        return float(self.returns.max())


@dataclass
class Case:
    name: str
    algo: str
    env_id: str
    runs: list[RunResult] = field(default_factory=list)


def find_runs(paths: list[str | Path]) -> list[tuple[Path, Path]]:
    """(run folder, the path given that holds it) for every run among `paths`: each path is a
    run folder (held by its parent) or holds run folders, searched below it (a run's best/ copy
    is not a run)."""
    found: list[tuple[Path, Path]] = []
    for path in map(Path, paths):
        if not path.is_dir():
            raise ConfigError(f"not a folder: {path}")
        if (path / CONFIG_FILE).is_file():
            found.append((path, path.parent))
            continue
        copies = {BEST_DIR, BEST_DIR + ".tmp", BEST_DIR + ".old"}  # a run's best policy
        below = sorted(p.parent for p in path.rglob(CONFIG_FILE) if p.parent.name not in copies)
        if not below:
            raise ConfigError(f"{path} is not a run folder and holds none (no {CONFIG_FILE})")
        found.extend((run, path) for run in below)
    return found


def load_run(run_dir: Path) -> RunResult | None:
    """The run's evaluations, or None when it has none (trained with eval_episodes 0)."""
    record = read_config(run_dir)
    if read_best(run_dir) is not None:
        return None
    records = read_records(run_dir)
    if records:
        steps = [r["step"] for r in records]
        values = [r["mean_reward"] for r in records]
    else:
        series = read_scalars(run_dir).get("eval/mean_reward", [])
        if not series:
            return None
        steps, values = zip(*series)
    return RunResult(run_dir, record["algo"], record["env_id"],
                     int(record["config"].get("seed", 0)), np.asarray(steps, np.int64),
                     np.asarray(values, float))


def load_cases(paths: list[str | Path], by: str = "case") -> tuple[list[Case], list[Path]]:
    """(cases in first-seen order, run folders without evaluations)."""
    if by not in ("case", "folder"):
        raise ConfigError(f"--by must be case or folder, got {by!r}")
    cases: dict[str, Case] = {}
    skipped = []
    seen = set()
    for run_dir, source in find_runs(paths):
        if run_dir in seen:
            continue
        seen.add(run_dir)
        run = load_run(run_dir)
        if run is None:
            skipped.append(run_dir)
            continue
        name = f"{run.algo} {run.env_id}"
        if by == "folder":  # the folder given on the command line (or a run's own parent)
            name = f"{source.resolve().name}: {name}"
        cases.setdefault(name, Case(name, run.algo, run.env_id)).runs.append(run)
    if not cases:
        raise RLSeverError("none of the runs has evaluations (evaluations.json or "
                           "eval/mean_reward): train with eval_episodes > 0")
    return list(cases.values()), skipped
