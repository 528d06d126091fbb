"""Action distributions: one small interface per space kind (on-policy), and the
tanh-squashed Gaussian of SAC. Written in TensorFlow ops, with tensorflow-probability's
formulas (log-probabilities, entropies and modes equal to its Categorical and
MultivariateNormalDiag; tests/test_distributions_native.py); importing tensorflow-probability
cost 0.46 s of every run's start-up (docs/performance.md)."""

from __future__ import annotations

import math

import tensorflow as tf

from rl_sever.config.spaces import ActionSpec
from rl_sever.nn.host_math import LOG_STD_MAX, LOG_STD_MIN, MASKED_LOGIT

_LOG2 = math.log(2.0)


_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


class Categorical:
    """A categorical over the last axis of `logits` (int32 actions)."""

    def __init__(self, logits: tf.Tensor):
        self.logits = logits

    def log_prob(self, actions: tf.Tensor) -> tf.Tensor:
        labels = tf.cast(actions, tf.int32)
        batch = self.logits.shape[:-1]
        known = batch.is_fully_defined() and labels.shape.is_fully_defined()
        if not known or batch != labels.shape:  # broadcast one against the other, as TFP does
            logits = self.logits * tf.ones_like(labels[..., None], self.logits.dtype)
            labels = labels * tf.ones(tf.shape(logits)[:-1], tf.int32)
        else:
            logits = self.logits
        return -tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)

    def entropy(self) -> tf.Tensor:
        log_p = tf.math.log_softmax(self.logits)
        p = tf.math.exp(log_p)  # a zero probability adds zero, whatever its log
        return -tf.reduce_sum(tf.where(tf.equal(p, 0), tf.zeros_like(log_p), log_p) * p, axis=-1)

    def sample(self, seed: tf.Tensor) -> tf.Tensor:
        logits = self.logits
        flat = tf.reshape(logits, [-1, tf.shape(logits)[-1]])
        draws = tf.random.stateless_categorical(flat, 1, seed=seed, dtype=tf.int32)
        return tf.reshape(draws, tf.shape(logits)[:-1])

    def mode(self) -> tf.Tensor:
        return tf.argmax(self.logits, axis=-1, output_type=tf.int32)


class DiagGaussian:
    """A Gaussian with diagonal covariance over the last axis (`loc`, `scale_diag`)."""

    def __init__(self, loc: tf.Tensor, scale_diag: tf.Tensor):
        self.loc, self.scale_diag = loc, scale_diag

    def log_prob(self, x: tf.Tensor) -> tf.Tensor:
        z = (x - self.loc) / self.scale_diag
        return (tf.reduce_sum(-0.5 * tf.square(z) - _HALF_LOG_2PI, axis=-1)
                - tf.reduce_sum(tf.math.log(tf.abs(self.scale_diag)), axis=-1))

    def entropy(self) -> tf.Tensor:
        return tf.reduce_sum(0.5 + _HALF_LOG_2PI + tf.math.log(tf.abs(self.scale_diag)), axis=-1)

    def sample(self, seed: tf.Tensor) -> tf.Tensor:
        eps = tf.random.stateless_normal(tf.shape(self.loc), seed, dtype=self.loc.dtype)
        return self.loc + self.scale_diag * eps

    def mode(self) -> tf.Tensor:
        return self.loc


class MultiCategorical:
    """Independent categoricals, one per MultiDiscrete component (sizes may differ)."""

    def __init__(self, logits: tf.Tensor, nvec: tuple[int, ...]):
        self.parts = [Categorical(part) for part in tf.split(logits, list(nvec), axis=-1)]

    def log_prob(self, actions: tf.Tensor) -> tf.Tensor:
        return tf.add_n([d.log_prob(actions[..., i]) for i, d in enumerate(self.parts)])

    def entropy(self) -> tf.Tensor:
        return tf.add_n([d.entropy() for d in self.parts])

    def sample(self, seed: tf.Tensor) -> tf.Tensor:
        seeds = tf.random.experimental.stateless_split(seed, len(self.parts))
        return tf.stack([d.sample(seeds[i]) for i, d in enumerate(self.parts)], axis=-1)

    def mode(self) -> tf.Tensor:
        return tf.stack([d.mode() for d in self.parts], axis=-1)


class ActionHead:
    """Turns policy-network outputs into a distribution over actions of one `ActionSpec`."""

    def __init__(self, spec: ActionSpec):
        self.spec = spec

    @property
    def param_dim(self) -> int:
        if self.spec.kind == "discrete":
            return self.spec.n
        if self.spec.kind == "multidiscrete":
            return int(sum(self.spec.nvec))
        return int(self.spec.shape[0])

    def distribution(self, params: tf.Tensor, log_std: tf.Tensor | None = None,
                     mask: tf.Tensor | None = None):
        """`mask` (bool, [batch, mask_dim], discrete kinds): the allowed actions; the others get
        probability zero, in sampling, log-probabilities, entropy and the mode alike."""
        if mask is not None:
            params = masked_logits(params, mask)
        if self.spec.kind == "discrete":
            return Categorical(params)
        if self.spec.kind == "multidiscrete":
            return MultiCategorical(params, self.spec.nvec)
        # State-independent log-std; actions are clipped to the bounds only when stepping the env.
        scale = tf.exp(log_std) * tf.ones_like(params)
        return DiagGaussian(params, scale)

    def sample(self, dist, seed: tf.Tensor) -> tf.Tensor:
        return tf.cast(dist.sample(seed), tf.float32 if self.spec.kind == "box" else tf.int32)

    def parameters(self, dist) -> tuple[str, dict[str, tf.Tensor]]:
        """(kind, parameters) of `dist`: logits (masked ones at MASKED_LOGIT) for discrete
        kinds, mean and log-std for a Gaussian (what a stochastic export returns)."""
        if self.spec.kind == "discrete":
            return "categorical", {"logits": dist.logits}
        if self.spec.kind == "multidiscrete":
            return "multicategorical", {"logits": tf.concat([d.logits for d in dist.parts], -1)}
        return "gaussian", {"mean": dist.loc, "log_std": tf.math.log(dist.scale_diag)}

    def mode(self, dist) -> tf.Tensor:
        if self.spec.kind == "box":  # the Gaussian's mean
            return tf.cast(dist.loc, tf.float32)
        return tf.cast(dist.mode(), tf.int32)


def masked_logits(logits: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """`logits` with the actions `mask` forbids set to MASKED_LOGIT (no gradient reaches them)."""
    return tf.where(mask, logits, tf.constant(MASKED_LOGIT, logits.dtype))


def squashed_gaussian_sample(mean: tf.Tensor, log_std: tf.Tensor, seed: tf.Tensor):
    """Reparameterised sample a = tanh(u), u ~ N(mean, std), and log pi(a) (summed over dims).

    log pi(a) = log N(u) - sum log(1 - tanh(u)^2): the change of variables of the squashing,
    with log(1 - tanh(u)^2) written as 2 (log 2 - u - softplus(-2u)), which stays finite where
    1 - tanh(u)^2 underflows.
    """
    eps = tf.random.stateless_normal(tf.shape(mean), seed)
    u = mean + tf.exp(log_std) * eps
    log_normal = -0.5 * tf.square(eps) - log_std - 0.5 * math.log(2.0 * math.pi)
    log_det = 2.0 * (_LOG2 - u - tf.nn.softplus(-2.0 * u))
    return tf.tanh(u), tf.reduce_sum(log_normal - log_det, axis=-1)


def split_mean_log_std(out: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    mean, log_std = tf.split(out, 2, axis=-1)
    return mean, tf.clip_by_value(log_std, LOG_STD_MIN, LOG_STD_MAX)
