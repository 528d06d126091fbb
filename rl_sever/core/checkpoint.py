"""Checkpoints through tf.train.CheckpointManager (no pickle), with clear errors.

TensorFlow writes a checkpoint's files under temporary names and renames them, then rewrites
the `checkpoint` index atomically: a checkpoint is complete or absent from the index. Restoring
falls back from an unreadable newest checkpoint to the newest readable one, with a warning.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import tensorflow as tf
from google.protobuf.message import DecodeError

from rl_sever.errors import CheckpointError


class Checkpointer:
    """Saves and restores a tf.train.Checkpoint in <run_dir>/checkpoints."""

    def __init__(self, checkpoint: tf.train.Checkpoint, run_dir: str | Path, max_to_keep: int = 3):
        self.directory = Path(run_dir) / "checkpoints"
        self.checkpoint = checkpoint
        self.manager = tf.train.CheckpointManager(checkpoint, str(self.directory), max_to_keep=max_to_keep)

    def save(self, step: int) -> str:
        return self.manager.save(checkpoint_number=int(step))

    @property
    def latest(self) -> str | None:
        return self.manager.latest_checkpoint

    def candidates(self) -> list[str]:
        """Checkpoint paths to try, newest first: those the index lists, in reverse order of
        saving (after a fallback, a newer save outranks the unreadable one), then any other
        `ckpt-N.index` on disk by number (the index itself may be lost or unreadable)."""
        try:
            listed = list(reversed(self.manager.checkpoints))
        except (tf.errors.OpError, ValueError, DecodeError):
            listed = []
        on_disk = sorted(((int(m.group(1)), str(p.with_suffix("")))
                          for p in self.directory.glob("ckpt-*.index")
                          if (m := re.fullmatch(r"ckpt-(\d+)\.index", p.name))), reverse=True)
        names = {Path(path).name for path in listed}
        return listed + [path for _, path in on_disk if Path(path).name not in names]

    def restore_latest(self) -> str:
        """Restore the newest readable checkpoint; warn when it is not the newest one."""
        candidates = self.candidates()
        if not candidates:
            raise CheckpointError(f"no checkpoint found in {self.directory}")
        failures = []
        for path in candidates:
            try:
                restore(self.checkpoint, path)
            except CheckpointError as e:
                failures.append(f"{Path(path).name} ({getattr(e, 'reason', e)})")
                continue
            if failures:
                warnings.warn(f"checkpoint {failures[0]} is unreadable; using {Path(path).name}, "
                              "the newest readable one", CheckpointFallbackWarning, stacklevel=2)
            return path
        raise CheckpointError(f"no readable checkpoint in {self.directory}: "
                              + ", ".join(failures))


class CheckpointFallbackWarning(UserWarning):
    """The newest checkpoint could not be read; an older one was restored."""


def restore(checkpoint: tf.train.Checkpoint, path: str) -> str:
    """Restore `path` into `checkpoint`, turning TensorFlow's errors into a CheckpointError."""
    try:
        status = checkpoint.restore(path)
        status.assert_existing_objects_matched()
        # Saved values nothing here reads (a loss term Agent.load left out):
        # expected, not worth TensorFlow's warning when the checkpoint object goes.
        status.expect_partial()
    # A truncated file fails inside the reader with IndexError or a protobuf DecodeError.
    except (tf.errors.OpError, AssertionError, ValueError, IndexError, DecodeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        error = CheckpointError(
            f"checkpoint {path} is corrupt or does not match this agent's configuration: {first}")
        error.reason = first
        raise error from None
    return path
