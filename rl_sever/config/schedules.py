"""Schedules for values annealed over a run; they write tf.Variables, so nothing retraces."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rl_sever.errors import ConfigError

if TYPE_CHECKING:  # the config layer imports no TensorFlow (env runners unpickle configs)
    import tensorflow as tf


def schedule_value(kind: str, initial: float, progress: float) -> float:
    """Value at `progress` in [0, 1] (fraction of the run done)."""
    progress = min(max(progress, 0.0), 1.0)
    if kind == "constant":
        return initial
    if kind == "linear":
        return initial * (1.0 - progress)
    raise ConfigError(f"unknown schedule '{kind}'; use constant or linear")


class Scheduled:
    """A tf.Variable whose value follows a schedule, updated from Python between iterations."""

    def __init__(self, variable: tf.Variable, kind: str, initial: float):
        schedule_value(kind, initial, 0.0)  # validate the kind early
        self.variable, self.kind, self.initial = variable, kind, initial
        self.value: float | None = None  # last value written, so constant schedules cost nothing

    def update(self, progress: float) -> float:
        value = schedule_value(self.kind, self.initial, progress)
        if value != self.value:
            self.variable.assign(value)
            self.value = value
        return value
