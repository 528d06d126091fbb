"""TensorBoard logging: record keys during an iteration, dump them once at an env step.

A write that fails (a full disk, a file-size limit) warns (once per streak of failures) and
training goes on: the points of that dump are counted as lost, and the next dump opens a new
event file and tries again (TensorBoard reads every event file of a folder); while retries
keep failing, one every RETRY_S seconds.
"""

from __future__ import annotations

import functools
import math
import os
import re
import socket
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2

from rl_sever.core.disk import WRITE_ERRORS, is_write_error, reason


@functools.cache
def _scalar_metadata() -> summary_pb2.SummaryMetadata:
    """The metadata tf.summary.scalar attaches (TensorBoard's scalar plugin), as TF's proto."""
    from tensorboard.plugins.scalar import metadata

    return summary_pb2.SummaryMetadata.FromString(
        metadata.create_summary_metadata(display_name=None, description=None).SerializeToString())


RETRY_S = 30.0


_STAMPED = re.compile(r"events\.out\.tfevents\.([0-9]+)\.", re.ASCII)


def _writer_after_existing(logdir) -> Any:
    """A summary writer whose event file sorts after the folder's existing ones.

    An event file's name is `events.out.tfevents.<second>.<host>.<pid>.<n>.v2`, and TensorBoard
    reads a folder's files in name order. A resumed run whose writer opens in the same second as
    another process's last file would sort among that process's files by host and pid, and
    TensorBoard would read its points before theirs. So the writer waits for the next second in
    that case only (a resume within a second of the last file); this process's own files (a
    later `learn()` call) already sort by their counter.
    """
    now, own = int(time.time()), f".{socket.gethostname()}.{os.getpid()}."
    for path in Path(logdir).glob("events.out.tfevents.*"):
        found = _STAMPED.match(path.name)
        if found and int(found[1]) == now and not path.name[found.end(1):].startswith(own):
            time.sleep(max(0.0, now + 1 - time.time()) + 0.001)
            break
    return tf.summary.create_file_writer(str(logdir))


class EventWriteWarning(UserWarning):
    """TensorBoard events could not be written; training goes on."""


class Logger:
    """SB3-style key/value logger writing TensorBoard event files (x-axis: env steps)."""

    def __init__(self, logdir: str | Path | None, trackers: Any = None):
        self.logdir = logdir
        self.trackers = trackers  # rl_sever.core.trackers.Trackers: W&B, MLflow (or None)
        self.writer = _writer_after_existing(logdir) if logdir is not None else None
        self.values: dict[str, list[float]] = {}
        self.last: dict[str, float] = {}
        self.lost_points = 0  # scalars of dumps that could not be written
        self._failed_at: float | None = None
        self._retried = False

    def _write(self, write) -> bool:
        """Run `write` (summary ops into the writer) and flush; False if the disk refused."""
        if self.writer is None:
            return False
        if self._failed_at is not None:
            # The next flush after a failure retries; a failed retry waits RETRY_S for the next
            # (each retry is a new event file: not one per iteration while the disk is full).
            waiting = self._retried and time.monotonic() - self._failed_at < RETRY_S
            if waiting:
                return False
            self._retried = True
            if not self._reopen():
                return False
        try:
            write()
            self.writer.flush()
        except WRITE_ERRORS as e:
            if not is_write_error(e):
                raise
            if self._failed_at is None:
                warnings.warn(f"TensorBoard events not written to {self.logdir}: {reason(e)}; "
                              "training goes on and logging tries again", EventWriteWarning,
                              stacklevel=3)
            self._failed_at = time.monotonic()
            return False
        self._failed_at, self._retried = None, False
        return True

    def _reopen(self) -> bool:
        """A new event file (the failed writer's is abandoned); False if it cannot be made."""
        try:
            self.writer.close()
        except WRITE_ERRORS:
            pass
        try:
            self.writer = tf.summary.create_file_writer(str(self.logdir))
        except WRITE_ERRORS:
            self._failed_at = time.monotonic()
            return False
        return True

    def record(self, key: str, value: Any) -> None:
        """Record a value; several records of a key before a dump are averaged."""
        value = float(np.asarray(value))
        if not math.isnan(value):
            self.values.setdefault(key, []).append(value)

    def record_many(self, values: Mapping[str, Any], prefix: str = "") -> None:
        for k, v in values.items():
            self.record(prefix + k, v)

    def dump(self, step: int) -> dict[str, float]:
        """Write the mean of every recorded key at `step` and clear them; returns what was written."""
        written = {k: sum(v) / len(v) for k, v in self.values.items()}  # inf stays inf
        self.values = {}
        self.last.update(written)
        if self.trackers is not None:
            self.trackers.scalars(written, step)
        if self.writer is not None and written:
            # One event holding every scalar, written by one op: tf.summary.scalar per key cost
            # a few eager ops each (PPO on a masked env: 0.8 s of a 10 s run for 1,764 scalars).
            # The values are what tf.summary.scalar writes: float32 tensors, scalar metadata
            # (the proto built directly: tf.make_tensor_proto cost 12 µs a value).
            meta, shape = _scalar_metadata(), tensor_shape_pb2.TensorShapeProto()
            summary = summary_pb2.Summary(value=[
                summary_pb2.Summary.Value(tag=key, metadata=meta, tensor=tensor_pb2.TensorProto(
                    dtype=types_pb2.DT_FLOAT, tensor_shape=shape, float_val=[value]))
                for key, value in sorted(written.items())])

            def write():
                with self.writer.as_default(step=int(step)):
                    tf.summary.experimental.write_raw_pb(summary.SerializeToString(),
                                                         step=int(step))

            if not self._write(write):
                self.lost_points += len(written)
        return written

    def text(self, name: str, markdown: str, step: int = 0) -> None:
        def write():
            with self.writer.as_default(step=int(step)):
                tf.summary.text(name, markdown)

        self._write(write)

    def hparams(self, hparams: Mapping[str, Any], step: int = 0) -> None:
        """The resolved config as a markdown table and in TensorBoard's HParams dashboard."""
        if self.writer is None:
            return
        rows = ["| key | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in hparams.items()]
        self.text("config", "\n".join(rows), step)
        from tensorboard.plugins.hparams import api as hp

        clean = {k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in hparams.items()}

        def write():
            with self.writer.as_default(step=int(step)):
                hp.hparams(clean)

        self._write(write)

    def close(self) -> None:
        if self.trackers is not None:
            self.trackers.close()
        if self.writer is not None:
            try:
                self.writer.flush()
                self.writer.close()
            except WRITE_ERRORS:
                pass  # counted where the points were dumped
