"""Generalised advantage estimation with terminated vs truncated episodes kept apart."""

from __future__ import annotations

import tensorflow as tf


def gae(rewards: tf.Tensor, values: tf.Tensor, next_values: tf.Tensor, terminated: tf.Tensor,
        dones: tf.Tensor, gamma: float | tf.Tensor,
        lam: float | tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Advantages and returns for a rollout of shape [T, N] (time-major).

    next_values[t] is V of the state actually reached after step t: the next observation
    normally, the true final observation when the episode ended at t (autoreset has already
    replaced the observation by the next episode's first). `terminated` zeroes the bootstrap
    (the episode really ended); `dones` (terminated or truncated) stops the recursion so no
    advantage leaks across episodes, while a truncated step still bootstraps from V(final obs).
    """
    rewards = tf.convert_to_tensor(rewards, tf.float32)
    not_term = 1.0 - tf.cast(terminated, tf.float32)
    not_done = 1.0 - tf.cast(dones, tf.float32)
    deltas = rewards + gamma * next_values * not_term - values
    decay = gamma * lam * not_done
    # Backwards in time: A[t] = deltas[t] + decay[t] * A[t + 1].
    advantages = tf.scan(lambda carry, x: x[0] + x[1] * carry, (deltas, decay),
                         initializer=tf.zeros_like(deltas[0]), reverse=True)
    return advantages, advantages + values
