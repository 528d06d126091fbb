"""Running mean / variance with a NumPy hot path and a checkpointable TF mirror (made, and
TensorFlow imported, only when a checkpoint, an export or compiled code asks for it: env
runners without TensorFlow normalise with the NumPy side alone)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import tensorflow as tf

_MIRROR_CLASS: list = []  # the tf.Module class of the mirrors, made on first use


def _make_mirror(name: str | None, mean: np.ndarray, var: np.ndarray, count: float):
    """A tf.Module holding float64 variables `mean_variable`, `var_variable`, `count_variable`
    (the names checkpoints hold them under)."""
    import tensorflow as tf

    if not _MIRROR_CLASS:
        class RunningMeanStdVariables(tf.Module):
            """The checkpointable mirror of a RunningMeanStd's statistics."""

        _MIRROR_CLASS.append(RunningMeanStdVariables)
    module = _MIRROR_CLASS[0](name=name)
    with tf.init_scope():
        module.mean_variable = tf.Variable(mean, trainable=False, name="mean")
        module.var_variable = tf.Variable(var, trainable=False, name="var")
        module.count_variable = tf.Variable(np.float64(count), trainable=False, name="count")
    return module


def mirror_of(stats):
    """The checkpointable mirror of a RunningMeanStd, or of each of a key -> RunningMeanStd
    dict (a Dict observation's), as its checkpoints and exports hold them."""
    if isinstance(stats, dict):
        return {key: rms.trackable() for key, rms in stats.items()}
    return stats.trackable()


class RunningMeanStd:
    """Running mean and (population) variance of a stream of batches.

    Updates merge each batch with Chan et al.'s parallel-variance formula, which is exact
    for any split of the data into batches. The count starts at a small `epsilon` (as in
    Stable-Baselines3) with mean 0 and variance 1, so the first batches are pulled very
    slightly towards that prior and nothing divides by zero; pass `epsilon=0.0` for plain
    sample statistics.

    The NumPy fields `mean`, `var` (float64 arrays of `shape`) and `count` (float) are the
    source of truth while stepping environments. `mean_variable`, `var_variable` and
    `count_variable` (all float64, so a save/restore is lossless) mirror them in the tf.Module
    `trackable()` returns, for `tf.train.Checkpoint`, and for `normalize_tf` inside compiled
    code; copy across with `sync_to_variables()` before saving or exporting, and
    `sync_from_variables()` after restoring. With `lazy_mirror` the variables are created on
    first use (or by `make_variables()`, before a checkpoint restores into them), so building
    one runs no TensorFlow op and needs no TensorFlow.
    """

    def __init__(self, shape: tuple[int, ...] = (), epsilon: float = 1e-4,
                 name: str | None = None, *, lazy_mirror: bool = False) -> None:
        self.name = name
        self.shape = tuple(int(d) for d in shape)
        self.mean = np.zeros(self.shape, np.float64)
        self.var = np.ones(self.shape, np.float64)
        self.count = float(epsilon)
        # The mirror is made on first use (a checkpoint, compiled code), not here: an env built
        # before an agent must not run TensorFlow ops, which would fix TensorFlow's thread pools
        # before the agent sets them (rl_sever.core.threads).
        self._mirror = None
        if not lazy_mirror:
            self.make_variables()

    def make_variables(self) -> None:
        """Create the checkpointable mirror (from the current statistics) if not there yet."""
        if self._mirror is None:
            self._mirror = _make_mirror(self.name, self.mean, self.var, self.count)

    def trackable(self) -> tf.Module:
        """The tf.Module holding the mirror's variables, for `tf.train.Checkpoint`."""
        self.make_variables()
        return self._mirror

    @property
    def mean_variable(self) -> tf.Variable:
        return self.trackable().mean_variable

    @property
    def var_variable(self) -> tf.Variable:
        return self.trackable().var_variable

    @property
    def count_variable(self) -> tf.Variable:
        return self.trackable().count_variable

    def update(self, batch: np.ndarray) -> None:
        """Merge a batch of samples, shaped `(batch_size, *shape)`, into the statistics."""
        batch = np.asarray(batch, np.float64)
        if batch.shape[1:] != self.shape:
            raise ValueError(f"RunningMeanStd of shape {self.shape} got a batch of shape "
                             f"{batch.shape}; expected (batch_size, *{self.shape})")
        if batch.shape[0]:
            self.update_from_moments(batch.mean(axis=0), batch.var(axis=0), batch.shape[0])

    def update_from_moments(self, batch_mean: np.ndarray, batch_var: np.ndarray, n: int) -> None:
        """Merge a batch given by its mean, population variance and size."""
        total = self.count + n
        delta = batch_mean - self.mean
        # Sum of squared deviations of both parts plus the between-part term (Chan et al.).
        m2 = self.var * self.count + batch_var * n + np.square(delta) * self.count * n / total
        self.mean = self.mean + delta * (n / total)
        self.var = m2 / total
        self.count = total

    def normalize(self, x: np.ndarray, clip: float = 10.0, eps: float = 1e-8) -> np.ndarray:
        """`(x - mean) / sqrt(var + eps)` clipped to `[-clip, clip]`, as float32."""
        y = (np.asarray(x, np.float64) - self.mean) / np.sqrt(self.var + eps)
        return np.clip(y, -clip, clip).astype(np.float32)

    def normalize_tf(self, x: tf.Tensor, clip: float = 10.0, eps: float = 1e-8,
                     dtype: tf.DType | None = None) -> tf.Tensor:
        """TF version of `normalize` reading the variables; traceable, float32 out.

        `dtype=tf.float64` computes as `normalize` does, so both give identical bits once
        the NumPy statistics come from the variables (after a restore).
        """
        import tensorflow as tf

        dtype = tf.float32 if dtype is None else dtype
        x = tf.cast(x, dtype)
        mean, var = tf.cast(self.mean_variable, dtype), tf.cast(self.var_variable, dtype)
        y = tf.clip_by_value((x - mean) / tf.sqrt(var + eps), -clip, clip)
        return tf.cast(y, tf.float32)

    def sync_to_variables(self) -> None:
        """Copy the NumPy statistics into the tf.Variables (before save / export)."""
        self.mean_variable.assign(self.mean)
        self.var_variable.assign(self.var)
        self.count_variable.assign(self.count)

    def sync_from_variables(self) -> None:
        """Copy the tf.Variables into the NumPy statistics (after a checkpoint restore)."""
        self.mean = self.mean_variable.numpy()
        self.var = self.var_variable.numpy()
        self.count = float(self.count_variable.numpy())
