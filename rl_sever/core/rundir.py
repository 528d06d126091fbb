"""Run folders: runs/<env>__<algo>__<seed>__<time>/ with config.json, event files, checkpoints/."""

from __future__ import annotations

import json
import os
import re
import socket
import sys
import time
from pathlib import Path
from typing import Any

from rl_sever.errors import CheckpointError

CONFIG_FILE = "config.json"


def unique_dir(parent: str | Path, name: str) -> Path:
    """Create `<parent>/<name>__<time>` (with -1, -2, ... when two start in the same second);
    `name` made safe for a file name."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", name)
    base = Path(parent) / f"{safe}__{time.strftime('%Y%m%d-%H%M%S')}"
    path, i = base, 1
    while path.exists():
        path = base.with_name(f"{base.name}-{i}")
        i += 1
    path.mkdir(parents=True)
    return path


def new_run_dir(logdir: str | Path, env_id: str, algo: str, seed: int) -> Path:
    """Create a fresh, uniquely named run folder under `logdir`."""
    path = unique_dir(logdir, f"{env_id}__{algo}__{seed}")
    (path / "checkpoints").mkdir()
    return path


def write_json(path: Path, data: Any, **dumps) -> None:
    """Write JSON under a temporary name, then rename: the file is whole or as it was."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, **dumps))
    tmp.replace(path)


def write_config(run_dir: Path, record: dict[str, Any]) -> None:
    write_json(run_dir / CONFIG_FILE, record, indent=2, sort_keys=True)


def read_config(run_dir: str | Path) -> dict[str, Any]:
    """The run's config.json, with clear errors for a missing or unreadable run folder."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"run directory not found: {run_dir}")
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{run_dir} is not an rl_sever run directory (no {CONFIG_FILE})")
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"cannot read {path}: {e}") from None
    for key in ("algo", "env_id", "config"):
        if key not in record:
            raise CheckpointError(f"{path} is missing the '{key}' entry")
    return record


LOCK_FILE = ".lock"


class RunLock:
    """One writer per run folder: an exclusive `flock` on `<run_dir>/.lock`, which holds the
    writer's pid, host and command. The kernel drops the lock when its process dies, however it
    dies, so a lock left by a crashed run is taken over; a live writer makes `acquire` raise
    RunLockedError naming it. Readers (eval, export, plot, TensorBoard) never take it."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / LOCK_FILE
        self._file = None

    def acquire(self) -> RunLock:
        try:
            import fcntl
        except ImportError:  # no flock (Windows): no lock
            return self
        f = open(self.path, "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise RunLockedError(f"{self.path.parent} is being trained by {holder}; one writer "
                                 "per run folder: wait for it to end or stop it") from None
        f.seek(0)
        f.truncate()
        command = " ".join(Path(a).name if i == 0 else a for i, a in enumerate(sys.argv))
        f.write(f"pid {os.getpid()} on {socket.gethostname()} since "
                f"{time.strftime('%Y-%m-%d %H:%M:%S')} ({command})\n")
        f.flush()
        self._file = f
        return self

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing drops the flock
            self._file = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


class RunLockedError(CheckpointError):
    """Another live process is training in this run folder."""


def describe_models(models) -> str:
    """A user's encoder as config.json names it: "<class> '<name>'", per key for a Dict
    observation's models ("camera: Sequential 'cnn', ...")."""
    if not isinstance(models, dict):
        return f"{type(models).__name__} {models.name!r}"
    return ", ".join(f"{k}: {type(m).__name__} {m.name!r}" for k, m in models.items())
