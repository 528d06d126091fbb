"""A full disk never loses a run: checkpoint saves that fail leave the newest complete checkpoint
in charge and are tried again, and the space a run will write is compared with what is free.

A checkpoint that cannot be written (any OS error, or TensorFlow's I/O errors from SaveV2 and
the checkpoint index: "No space left on device", "File too large") is cleaned away (its
`ckpt-N_temp/` folder, any `ckpt-N.*` file the index does not list, a half-written replay
buffer), one warning names the path and the error, and training goes on; the next interval
tries again. `MAX_FAILURES` failures in a row, or a failed final checkpoint, stop the run with
one line naming the newest complete checkpoint and the resume command (exit 2).
"""

from __future__ import annotations

import re
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from rl_sever.errors import WriteError

MAX_FAILURES = 3
WRITE_ERRORS = (OSError, tf.errors.OpError)  # caught, then sorted by is_write_error
# TensorFlow's I/O errors say what the OS said; other OpErrors (a bug, a bad tensor) are not
# a full disk and must not be reported as one.
_WRITE_WORDS = ("no space left", "file too large", "disk quota", "read-only file system",
                "permission denied", "could not flush", "failed to write", "errno",
                "input/output error")


def is_write_error(error: BaseException) -> bool:
    """Whether `error` is a failed write (any OSError; an OpError naming an I/O failure)."""
    if isinstance(error, OSError):
        return True
    if isinstance(error, (tf.errors.ResourceExhaustedError, tf.errors.PermissionDeniedError)):
        return True
    return isinstance(error, tf.errors.OpError) and any(
        w in str(error).lower() for w in _WRITE_WORDS)


def reason(error: BaseException) -> str:
    """The OS's words for a failed write, without TensorFlow's function-node prefix."""
    text = str(getattr(error, "message", None) or error).strip().splitlines()
    text = text[0] if text else type(error).__name__
    text = re.sub(r"^\{\{[^}]*\}\}\s*", "", text)
    text = re.sub(r"(_temp)/[^;:]*", r"\1", text)  # TensorFlow's temporary part-file names
    return re.sub(r"\s*\[Op:\w+\]$", "", text)[:300]


class CheckpointDisk:
    """Saves the agent's checkpoints for the training loop, surviving failed writes."""

    def __init__(self, agent: Any, run_dir: Path):
        self.agent, self.run_dir = agent, Path(run_dir)
        self.failures = 0  # in a row

    @property
    def directory(self) -> Path:
        return self.agent.checkpointer.directory

    def save(self, *, final: bool = False) -> str | None:
        """agent.save(); on a write error, clean up and warn (or stop: see the module)."""
        step = int(self.agent.global_step.numpy())
        try:
            path = self.agent.save()
        except WRITE_ERRORS as e:
            if not is_write_error(e):
                raise
            self.failures += 1
            clean_partial(self.directory, step)
            latest = newest_on_disk(self.directory)
            if final or self.failures >= MAX_FAILURES:
                raise WriteError(self._stop_line(step, e, latest, final)) from None
            warnings.warn(f"checkpoint at step {step:,} not written: {reason(e)}; the newest "
                          f"complete checkpoint is {_name(latest)}; trying again at the next "
                          "interval", CheckpointWriteWarning, stacklevel=2)
            return None
        self.failures = 0
        return path

    def _stop_line(self, step: int, error: BaseException, latest: str | None, final: bool) -> str:
        what = ("the final checkpoint" if final else
                f"{self.failures} checkpoints in a row (the last at step {step:,})")
        if latest is None:
            return (f"could not write {what}: {reason(error)}; no checkpoint of this run was "
                    f"completed, so it cannot resume: free space and train again")
        return (f"could not write {what}: {reason(error)}; the newest complete checkpoint is "
                f"{latest}; free space and resume with: rl-sever train --resume {self.run_dir}")


class CheckpointWriteWarning(UserWarning):
    """A checkpoint could not be written; the previous one stays the newest."""


def newest_on_disk(directory: Path) -> str | None:
    """The newest checkpoint the index on disk lists (what --resume restores), if any."""
    try:
        state = tf.train.get_checkpoint_state(str(directory))
    except (tf.errors.OpError, ValueError):
        return None
    return state.model_checkpoint_path if state and state.model_checkpoint_path else None


def clean_partial(directory: Path, step: int) -> None:
    """Remove what a failed save of checkpoint `step` left: its temporary folder, checkpoint
    files the index on disk does not list, a temporary index, an incomplete replay buffer."""
    try:
        state = tf.train.get_checkpoint_state(str(directory))
        listed = {Path(p).name for p in state.all_model_checkpoint_paths} if state else set()
    except (tf.errors.OpError, ValueError):
        listed = set()
    name = f"ckpt-{step}"
    for path in directory.glob(f"{name}*"):
        base = path.name.split(".")[0].removesuffix("_temp")
        if base == name and (path.name.endswith("_temp") or name not in listed):
            _remove(path)
    for path in directory.glob("checkpoint.tmp*"):  # the index's own temporary file
        _remove(path)
    for path in (directory / f"replay-{step}.tmp", directory / f"replay-{step}"):
        if path.name.endswith(".tmp") or name not in listed:
            _remove(path)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _name(path: str | None) -> str:
    return path if path else "none (none completed yet)"


def estimate_bytes(agent: Any, total_steps: int) -> dict[str, int]:
    """What a run will write: the checkpoints it keeps (its variables, optimizer slots
    included), the replay buffers saved with them, and its event files."""
    found: dict[int, Any] = {}
    for obj in agent.trackables().values():
        _variables(obj, found)
    checkpoint = int(sum(np.prod(v.shape) * tf.as_dtype(v.dtype).size for v in found.values())) + 4096
    kept = agent.checkpointer.manager._max_to_keep or 1
    replay = getattr(agent, "replay", None)
    numpy_replay = (replay is not None and getattr(agent, "ingraph", None) is None
                    and getattr(agent.config, "save_replay", False))
    replay_bytes = int(getattr(replay, "nbytes", 0)) if numpy_replay else 0
    cfg = agent.config
    per_iteration = getattr(cfg, "n_steps", None) or getattr(cfg, "steps_per_iteration", None) or 1
    every = cfg.log_every_steps or cfg.n_envs * int(per_iteration)
    dumps = total_steps // max(every, 1) + 2
    return {"checkpoints": kept * checkpoint, "replay": kept * replay_bytes,
            "events": dumps * 60 * 64 + 256 * 1024}


def _variables(obj: Any, found: dict[int, Any]) -> None:
    if isinstance(obj, tf.Variable):
        found[id(obj)] = obj
    elif isinstance(obj, dict):
        for value in obj.values():
            _variables(value, found)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            _variables(value, found)
    else:
        variables = getattr(obj, "variables", None)
        for v in variables if isinstance(variables, (list, tuple)) else ():
            found[id(v)] = v




def warn_if_it_will_not_fit(agent: Any, run_dir: Path, total_steps: int) -> dict[str, int]:
    """One warning, before the first step, when the run's files will not fit the free space."""
    need = estimate_bytes(agent, total_steps)
    free = shutil.disk_usage(run_dir).free
    if sum(need.values()) > free:
        parts = ", ".join(f"{k} {human_bytes(v)}" for k, v in need.items() if v)
        warnings.warn(f"this run will write about {human_bytes(sum(need.values()))} into {run_dir} "
                      f"({parts}) and {human_bytes(free)} is free there: checkpoints will fail when "
                      "the disk is full (training goes on; see docs/cli.md)", DiskSpaceWarning,
                      stacklevel=2)
    return {**need, "free": free}


class DiskSpaceWarning(UserWarning):
    """The run's files will not fit in the free space of its run folder's file system."""


def human_bytes(n: float) -> str:
    """123 B, 45.6 kB, 7.8 MB, 9.0 GB (decimal units, as file sizes are shown)."""
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
