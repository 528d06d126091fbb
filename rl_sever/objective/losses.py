"""Pure loss functions shared by the agents.

Everything produced by the critic (advantages, returns, old values) and everything from the
behaviour policy (old log-probs) enters a policy loss through `sever`: the policy loss must never
move the critic, and targets are constants of the update.
"""

from __future__ import annotations

import tensorflow as tf

from rl_sever.isolation import sever


def normalize(x: tf.Tensor, eps: float = 1e-8) -> tf.Tensor:
    mean, var = tf.nn.moments(x, axes=[0])
    return (x - mean) / (tf.sqrt(var) + eps)


def policy_gradient_loss(logp: tf.Tensor, advantages: tf.Tensor) -> tf.Tensor:
    """A2C / REINFORCE with baseline: -E[A * log pi(a|s)]."""
    # sever: the advantage is the critic's baseline; it weights the policy gradient only.
    return -tf.reduce_mean(sever(advantages) * logp)


def ppo_clip_loss(logp: tf.Tensor, logp_old: tf.Tensor, advantages: tf.Tensor,
                  clip_range: tf.Tensor | float) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
    """PPO clipped surrogate (Schulman et al. 2017, eq. 7), negated for minimisation.

    Also returns clip_fraction and approx_kl, the low-variance estimator
    E[(r - 1) - log r] from http://joschu.net/blog/kl-approx.html.
    """
    # sever: old log-probs come from the behaviour policy; advantages from the critic.
    log_ratio = logp - sever(logp_old)
    ratio = tf.exp(log_ratio)
    adv = sever(advantages)
    pg_loss1 = -adv * ratio
    pg_loss2 = -adv * tf.clip_by_value(ratio, 1.0 - clip_range, 1.0 + clip_range)
    loss = tf.reduce_mean(tf.maximum(pg_loss1, pg_loss2))
    clip_fraction = tf.reduce_mean(tf.cast(tf.abs(ratio - 1.0) > clip_range, tf.float32))
    approx_kl = sever(tf.reduce_mean((ratio - 1.0) - log_ratio))
    return loss, {"clip_fraction": sever(clip_fraction), "approx_kl": approx_kl}


def value_loss(values: tf.Tensor, returns: tf.Tensor, old_values: tf.Tensor | None = None,
               clip_range_vf: tf.Tensor | float | None = None) -> tf.Tensor:
    """Mean squared error to the returns; with `clip_range_vf`, the pessimistic clipped form."""
    # sever: returns are regression targets, not something to move.
    returns = sever(returns)
    v_loss_unclipped = tf.square(values - returns)
    if clip_range_vf is None or old_values is None:
        return tf.reduce_mean(v_loss_unclipped)
    old_values = sever(old_values)
    v_clipped = old_values + tf.clip_by_value(values - old_values, -clip_range_vf, clip_range_vf)
    v_loss_clipped = tf.square(v_clipped - returns)
    return tf.reduce_mean(tf.maximum(v_loss_unclipped, v_loss_clipped))


def entropy_loss(entropy: tf.Tensor) -> tf.Tensor:
    """Negative mean entropy (minimising it maximises exploration)."""
    return -tf.reduce_mean(entropy)


def explained_variance(values: tf.Tensor, returns: tf.Tensor) -> tf.Tensor:
    """1 - Var[returns - values] / Var[returns]; nan when the returns have no variance."""
    var_y = tf.math.reduce_variance(returns)
    ev = 1.0 - tf.math.reduce_variance(returns - values) / var_y
    return tf.where(var_y > 0.0, ev, tf.constant(float("nan")))
