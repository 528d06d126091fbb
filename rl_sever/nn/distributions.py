"""Action distributions: tensorflow-probability behind one small interface per space kind
(on-policy), and the tanh-squashed Gaussian of SAC."""

from __future__ import annotations

import math

import tensorflow as tf
import tensorflow_probability as tfp

from rl_sever.config.spaces import ActionSpec

tfd = tfp.distributions
LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0  # squashed Gaussian: as in SB3 and the SAC reference code
# The logit of a masked-out action: finite, so entropies stay 0 * MASKED_LOGIT = 0 (not NaN),
# and far enough below any real logit that its probability is exactly zero in float32.
MASKED_LOGIT = -1e8
_LOG2 = math.log(2.0)


class MultiCategorical:
    """Independent categoricals, one per MultiDiscrete component (sizes may differ)."""

    def __init__(self, logits: tf.Tensor, nvec: tuple[int, ...]):
        self.parts = [tfd.Categorical(logits=part) for part in tf.split(logits, list(nvec), axis=-1)]

    def log_prob(self, actions: tf.Tensor) -> tf.Tensor:
        return tf.add_n([d.log_prob(actions[..., i]) for i, d in enumerate(self.parts)])

    def entropy(self) -> tf.Tensor:
        return tf.add_n([d.entropy() for d in self.parts])

    def sample(self, seed: tf.Tensor) -> tf.Tensor:
        seeds = tfp.random.split_seed(seed, n=len(self.parts))
        return tf.stack([d.sample(seed=s) for d, s in zip(self.parts, seeds)], axis=-1)

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
            return tfd.Categorical(logits=params)
        if self.spec.kind == "multidiscrete":
            return MultiCategorical(params, self.spec.nvec)
        # State-independent log-std; actions are clipped to the bounds only when stepping the env.
        scale = tf.exp(log_std) * tf.ones_like(params)
        return tfd.MultivariateNormalDiag(loc=params, scale_diag=scale)

    def sample(self, dist, seed: tf.Tensor) -> tf.Tensor:
        return tf.cast(dist.sample(seed=seed), tf.float32 if self.spec.kind == "box" else tf.int32)

    def parameters(self, dist) -> tuple[str, dict[str, tf.Tensor]]:
        """(kind, parameters) of `dist`: logits (masked ones at MASKED_LOGIT) for discrete
        kinds, mean and log-std for a Gaussian (what a stochastic export returns)."""
        if self.spec.kind == "discrete":
            return "categorical", {"logits": dist.logits}
        if self.spec.kind == "multidiscrete":
            return "multicategorical", {"logits": tf.concat([d.logits for d in dist.parts], -1)}
        return "gaussian", {"mean": dist.loc, "log_std": tf.math.log(dist.scale.diag)}

    def mode(self, dist) -> tf.Tensor:
        if self.spec.kind == "box":  # the Gaussian's mean (its mode() adds broadcast ops that
            return tf.cast(dist.loc, tf.float32)  # ONNX has no kernel for)
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
