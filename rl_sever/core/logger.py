"""TensorBoard logging: record keys during an iteration, dump them once at an env step."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf


class Logger:
    """SB3-style key/value logger writing TensorBoard event files (x-axis: env steps)."""

    def __init__(self, logdir: str | Path | None):
        self.writer = tf.summary.create_file_writer(str(logdir)) if logdir is not None else None
        self.values: dict[str, list[float]] = {}
        self.last: dict[str, float] = {}

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
        written = {k: float(np.mean(v)) for k, v in self.values.items()}
        self.values = {}
        self.last.update(written)
        if self.writer is not None and written:
            with self.writer.as_default(step=int(step)):
                for key, value in sorted(written.items()):
                    tf.summary.scalar(key, value)
            self.writer.flush()
        return written

    def text(self, name: str, markdown: str, step: int = 0) -> None:
        if self.writer is not None:
            with self.writer.as_default(step=int(step)):
                tf.summary.text(name, markdown)
            self.writer.flush()

    def hparams(self, hparams: Mapping[str, Any], step: int = 0) -> None:
        """The resolved config as a markdown table and in TensorBoard's HParams dashboard."""
        if self.writer is None:
            return
        rows = ["| key | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in hparams.items()]
        self.text("config", "\n".join(rows), step)
        from tensorboard.plugins.hparams import api as hp

        clean = {k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in hparams.items()}
        with self.writer.as_default(step=int(step)):
            hp.hparams(clean)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
