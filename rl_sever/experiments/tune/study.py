"""`rl-sever tune`: a study of trials in one folder, run by worker processes, resumable.

    <logdir>/tune__<env>__<algo>__<time>/
        tune.json        the tune's settings (what --resume reads)
        study.journal    Optuna's journal storage: every trial, shared by the workers
                         (optuna-dashboard opens it)
        worker-K.log     what each worker printed
        trials/trial-NNNN/   each trial's run folder
        best.yaml        the best trial's values, for `rl-sever train --config`
        report.md        trials completed, pruned and failed; the best ones; importances

Sampler: TPE (multivariate, seeded per worker). Pruner: median (no pruning in the first third
of a trial's budget, nor before 5 trials finished), successive halving, or none; both read the
evaluations a trial makes during training. `--jobs N` runs N workers: this process and N-1
children sharing the journal. A killed tune resumes with `rl-sever tune --resume DIR`: trials
that were running when it died are marked failed and queued again with the same values.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from rl_sever.core.rundir import RunLock, unique_dir, write_json
from rl_sever.errors import ConfigError
from rl_sever.experiments.tune.trial import TuneSettings, work

SETTINGS_FILE = "tune.json"
JOURNAL_FILE = "study.journal"
STUDY_NAME = "tune"
optuna.logging.set_verbosity(optuna.logging.WARNING)  # the tune prints its own lines


def new_folder(logdir: str | Path, env_id: str, algo: str) -> Path:
    path = unique_dir(logdir, f"tune__{env_id}__{algo}")
    (path / "trials").mkdir()
    return path


def storage(folder: Path) -> JournalStorage:
    # An absolute path: Optuna's lock is a symlink to the journal, and a relative target
    # dangles, so a stale lock was never seen as stale (a resumed tune waited for ever).
    return JournalStorage(JournalFileBackend(str((Path(folder) / JOURNAL_FILE).resolve())))


def recover_journal(folder: Path) -> None:
    """After a killed tune (the caller holds the folder's lock, so nothing writes): remove the
    journal lock a killed writer left, and cut a last line the kill left unfinished (Optuna
    would append after it and make the journal unreadable)."""
    lock = Path(folder) / (JOURNAL_FILE + ".lock")
    if lock.is_symlink() or lock.exists():
        lock.unlink()
    path = Path(folder) / JOURNAL_FILE
    data = path.read_bytes() if path.is_file() else b""
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)


def make_pruner(name: str, budget: int, evals: int) -> optuna.pruners.BasePruner:
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=budget // 3)
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=max(1, budget // evals))
    return optuna.pruners.NopPruner()


def write_settings(folder: Path, record: dict) -> None:
    write_json(folder / SETTINGS_FILE, record, indent=1)


def read_settings(folder: str | Path) -> dict:
    folder = Path(folder)
    path = folder / SETTINGS_FILE
    if not path.is_file():
        raise ConfigError(f"{folder} is not a tune folder (no {SETTINGS_FILE})")
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read {path}: {e}") from None


def settings_of(record: dict, folder: Path, deadline: float | None) -> TuneSettings:
    keys = ("algo", "env_id", "base", "space", "budget", "evals", "eval_episodes", "trials",
            "seed", "threads")
    return TuneSettings(**{k: record[k] for k in keys}, deadline=deadline, folder=folder)


def load_study(folder: Path, record: dict, worker: int) -> optuna.Study:
    # The constant liar: a running trial counts as a poor one, so parallel workers do not
    # sample the same point.
    sampler = optuna.samplers.TPESampler(seed=record["seed"] + worker, multivariate=True,
                                         n_startup_trials=record["startup_trials"],
                                         constant_liar=True)
    return optuna.load_study(study_name=STUDY_NAME, storage=storage(folder), sampler=sampler,
                             pruner=make_pruner(record["pruner"], record["budget"],
                                                record["evals"]))


def requeue_stale(study: optuna.Study) -> list[int]:
    """Trials left running by a killed tune, or interrupted: failed, and queued again with their
    values (the caller holds the folder's lock, so no worker is running them). A trial cut
    before all its values were sampled is failed only: the next trial samples afresh."""
    requeued = []
    retried = {t.user_attrs.get("retry_of") for t in study.get_trials(deepcopy=False)}
    for t in study.get_trials(deepcopy=False):
        stale = t.state == TrialState.RUNNING
        interrupted = t.state == TrialState.FAIL and t.user_attrs.get("interrupted")
        if (stale or interrupted) and t.number not in retried:
            if stale:
                study.tell(t.number, state=TrialState.FAIL)
            # Its values are known once all are sampled ("values"), or from the start for a
            # queued retry (Optuna's fixed_params).
            fixed = t.system_attrs.get("fixed_params")
            if "values" in t.user_attrs or fixed is not None:
                study.enqueue_trial(fixed if fixed is not None else t.params,
                                    user_attrs={"retry_of": t.number})
                requeued.append(t.number)
    return requeued


def start(record: dict, folder: Path, *, jobs: int, timeout_min: float | None,
          resume: bool = False, log=print) -> optuna.Study:
    """Create (or resume) the study in `folder` and run its workers to the end."""
    with RunLock(folder):
        if not resume:
            write_settings(folder, record)
            optuna.create_study(study_name=STUDY_NAME, storage=storage(folder),
                                direction="maximize")
        if resume:
            recover_journal(folder)
        study = load_study(folder, record, 0)
        if resume:
            again = requeue_stale(study)
            if again:
                log(f"trials {', '.join(map(str, again))} did not finish; queued again")
        deadline = time.time() + 60 * timeout_min if timeout_min else None
        children = [_spawn(folder, k, deadline) for k in range(1, jobs)]
        try:
            work(study, settings_of(record, folder, deadline), log=_prefixed(log, 0))
            for child in children:
                child.wait()
        finally:  # this worker failed or was interrupted: the others stop at a trial's end
            _stop(children)
        for k, child in enumerate(children, 1):
            if child.returncode not in (0, None):
                log(f"worker {k} ended with exit code {child.returncode}; its output: "
                    f"{folder / f'worker-{k}.log'}")
    return study


def _stop(children: list[subprocess.Popen], grace_s: float = 60.0) -> None:
    """SIGINT (each worker marks its trial interrupted and exits), then SIGKILL after
    `grace_s`: a journal line is never cut by a kill while a grace is possible."""
    running = [c for c in children if c.poll() is None]
    for child in running:
        child.send_signal(signal.SIGINT)
    end = time.monotonic() + grace_s
    for child in running:
        try:
            child.wait(timeout=max(0.0, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _prefixed(log, worker: int):
    return lambda line: log(f"[worker {worker}] {line}")


def _spawn(folder: Path, worker: int, deadline: float | None) -> subprocess.Popen:
    command = [sys.executable, "-m", "rl_sever.experiments.tune.worker", str(folder),
               str(worker), "" if deadline is None else repr(deadline), str(os.getpid())]
    log = open(folder / f"worker-{worker}.log", "ab")
    try:  # a session of its own: a terminal's Ctrl-C reaches it once, through this process
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                                start_new_session=True)
    finally:
        log.close()


def record_of(settings: TuneSettings, *, user: dict, pruner: str, jobs: int,
              timeout_min: float | None, startup_trials: int) -> dict:
    data = asdict(settings)
    data.pop("deadline")
    data["folder"] = str(settings.folder)
    return {**data, "user": user, "pruner": pruner, "jobs": jobs, "timeout_min": timeout_min,
            "startup_trials": startup_trials, "created": time.strftime("%Y-%m-%d %H:%M:%S")}
