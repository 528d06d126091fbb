"""Running mean / variance with a NumPy hot path and a checkpointable TF mirror."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

_MIRROR = ("mean_variable", "var_variable", "count_variable")


class RunningMeanStd(tf.Module):
    """Running mean and (population) variance of a stream of batches.

    Updates merge each batch with Chan et al.'s parallel-variance formula, which is exact
    for any split of the data into batches. The count starts at a small `epsilon` (as in
    Stable-Baselines3) with mean 0 and variance 1, so the first batches are pulled very
    slightly towards that prior and nothing divides by zero; pass `epsilon=0.0` for plain
    sample statistics.

    The NumPy fields `mean`, `var` (float64 arrays of `shape`) and `count` (float) are the
    source of truth while stepping environments. `mean_variable`, `var_variable` and
    `count_variable` (all float64, so a save/restore is lossless) mirror them for
    `tf.train.Checkpoint` and for `normalize_tf` inside compiled code; copy across with
    `sync_to_variables()` before saving or exporting, and `sync_from_variables()` after
    restoring. With `lazy_mirror` the variables are created on first use (or by
    `make_variables()`, before a checkpoint restores into them), so building one runs no
    TensorFlow op.
    """

    def __init__(self, shape: tuple[int, ...] = (), epsilon: float = 1e-4,
                 name: str | None = None, *, lazy_mirror: bool = False) -> None:
        super().__init__(name=name)
        self.shape = tuple(int(d) for d in shape)
        self.mean = np.zeros(self.shape, np.float64)
        self.var = np.ones(self.shape, np.float64)
        self.count = float(epsilon)
        if not lazy_mirror:
            self.make_variables()

    def __getattr__(self, name: str):
        # The mirror's variables are made on first use (a checkpoint, compiled code), not here:
        # an env built before an agent must not run TensorFlow ops, which would fix TensorFlow's
        # thread pools before the agent sets them (rl_sever.core.threads).
        if name not in _MIRROR or self.__dict__.get("_making_mirror"):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        self.make_variables()
        return self.__dict__[name]

    def make_variables(self) -> None:
        """Create the checkpointable mirror (from the current statistics) if not there yet."""
        if "count_variable" in self.__dict__:
            return
        self.__dict__["_making_mirror"] = True  # (tracking reads the attribute before setting it)
        try:
            with tf.init_scope():
                self.mean_variable = tf.Variable(self.mean, trainable=False, name="mean")
                self.var_variable = tf.Variable(self.var, trainable=False, name="var")
                self.count_variable = tf.Variable(np.float64(self.count), trainable=False,
                                                  name="count")
        finally:
            del self.__dict__["_making_mirror"]

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
                     dtype: tf.DType = tf.float32) -> tf.Tensor:
        """TF version of `normalize` reading the variables; traceable, float32 out.

        `dtype=tf.float64` computes as `normalize` does, so both give identical bits once
        the NumPy statistics come from the variables (after a restore).
        """
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
