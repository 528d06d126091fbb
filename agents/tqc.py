"""Truncated Quantile Critics (Kuznetsov et al. 2020, "Controlling Overestimation Bias with
Truncated Mixture of Continuous Distributional Quantile Critics"), on SAC's page.

SAC with distributional critics: each of the n_critics critics predicts n_quantiles quantiles
of the return. The TD target pools the target critics' quantiles at the next state, sorts them
and drops the largest `top_quantiles_to_drop_per_net` per critic (cutting the top of the mixture
controls overestimation, as SAC's min over critics does), severed. Critic loss: quantile Huber
(kappa = 1); actor: alpha log pi(a|s) - mean of all quantiles; alpha: SAC's. Defaults are
sb3-contrib's (2 critics, 25 quantiles, drop 2 per critic); flow contract SAC's.
"""

from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf

from agents.sac import SAC, SACConfig
from rl_sever.config.fields import check
from rl_sever.isolation import sever
from rl_sever.nn.distributions import squashed_gaussian_sample

__all__ = ["TQC", "TQCConfig"]


@dataclass
class TQCConfig(SACConfig):
    n_quantiles: int = 25
    """Quantiles each critic predicts."""
    top_quantiles_to_drop_per_net: int = 2
    """Largest target quantiles dropped per critic (the truncation of the mixture)."""

    def validate(self) -> None:
        super().validate()
        check(self.n_quantiles >= 1, f"n_quantiles must be >= 1, got {self.n_quantiles}")
        check(0 <= self.top_quantiles_to_drop_per_net < self.n_quantiles,
              "top_quantiles_to_drop_per_net must be in [0, n_quantiles), got "
              f"{self.top_quantiles_to_drop_per_net}")


class TQC(SAC):
    """SAC with quantile critics and a truncated mixture as the TD target."""

    algo = "tqc"
    config_cls = TQCConfig

    def _build_critic(self, feature_dim: int) -> None:
        cfg = self.config  # n_critics members, each with n_quantiles outputs
        self.critic = self.mlp(feature_dim + self.action_dim, cfg.n_quantiles,
                               members=cfg.n_critics, seed=cfg.seed + 1, name="critic")
        self.target_critic = self.critic.copy("target_critic")

    def td_target(self, mb, next_features, seed):
        cfg = self.config
        # The next action from the current policy (severed features: the critic loss trains
        # no part of the policy; the whole target is severed below anyway).
        mean, log_std = self._policy(sever(next_features()))
        next_actions, next_logp = squashed_gaussian_sample(mean, log_std, seed)
        z_next = self.target_critic(  # [critics, batch, quantiles]
            tf.concat([self.target_features(mb["next_obs"]), next_actions], -1))
        # Pool every critic's quantiles, sort them, keep the lowest (truncation).
        pooled = tf.reshape(tf.transpose(z_next, [1, 0, 2]), [tf.shape(z_next)[1], -1])
        kept = cfg.n_critics * (cfg.n_quantiles - cfg.top_quantiles_to_drop_per_net)
        z_kept = tf.sort(pooled, axis=-1)[:, :kept]
        soft = z_kept - tf.exp(self.log_alpha) * next_logp[:, None]
        not_done = mb["discounts"] * (1.0 - mb["terminated"])
        # TD target atoms [batch, kept]: constants for the critic loss.
        return sever(mb["rewards"][:, None] + not_done[:, None] * soft)

    def critic_loss(self, q, y):
        """Quantile Huber loss: q [critics, batch, quantiles], y [batch, atoms] (severed),
        averaged over everything (sb3-contrib's reduction; the paper sums over quantiles)."""
        n = self.config.n_quantiles
        tau = (tf.range(n, dtype=tf.float32) + 0.5) / n  # quantile midpoints
        delta = y[None, :, None, :] - q[..., None]  # [critics, batch, quantiles, atoms]
        abs_delta = tf.abs(delta)
        huber = tf.where(abs_delta > 1.0, abs_delta - 0.5, 0.5 * tf.square(delta))
        weight = tf.abs(tau[:, None] - tf.cast(delta < 0.0, tf.float32))
        return tf.reduce_mean(weight * huber)

    def actor_q(self, z):
        """The mean of all quantiles of all critics."""
        return tf.reduce_mean(z, axis=[0, 2])
