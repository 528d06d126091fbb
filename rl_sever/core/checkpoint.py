"""Checkpoints through tf.train.CheckpointManager (no pickle), with clear errors."""

from __future__ import annotations

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

    def restore_latest(self) -> str:
        path = self.latest
        if path is None:
            raise CheckpointError(f"no checkpoint found in {self.directory}")
        return restore(self.checkpoint, path)


def restore(checkpoint: tf.train.Checkpoint, path: str) -> str:
    """Restore `path` into `checkpoint`, turning TensorFlow's errors into a CheckpointError."""
    try:
        status = checkpoint.restore(path)
        status.assert_existing_objects_matched()
    # A truncated file fails inside the reader with IndexError or a protobuf DecodeError.
    except (tf.errors.OpError, AssertionError, ValueError, IndexError, DecodeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"checkpoint {path} is corrupt or does not match this agent's configuration: {first}"
        ) from None
    return path
