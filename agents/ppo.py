"""Proximal Policy Optimization (clipped surrogate), on the shared on-policy actor-critic."""

from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf

from rl_sever.config.fields import check
from rl_sever.config.run import SCHEDULES, OnPolicyConfig
from rl_sever.config.schedules import Scheduled
from rl_sever.objective import LossTerm, ppo_clip, value_mse
from rl_sever.onpolicy.agent import OnPolicyAgent

__all__ = ["PPO", "PPOConfig"]


@dataclass
class PPOConfig(OnPolicyConfig):
    batch_size: int = 64
    """Minibatch size; each epoch splits the rollout into n_steps * n_envs / batch_size minibatches."""
    n_epochs: int = 10
    """Passes over the rollout per update."""
    clip_range: float = 0.2
    """Initial clip range of the probability ratio."""
    clip_schedule: str = "constant"
    """Clip-range schedule over the run: constant or linear (to zero)."""
    clip_range_vf: float | None = None
    """Clip the value update around the old values by this much (None: no value clipping)."""
    target_kl: float | None = None
    """Stop the epochs of an update early once approx_kl exceeds 1.5 * target_kl (None: never)."""

    def validate(self) -> None:
        super().validate()
        rollout = self.n_steps * self.n_envs
        check(self.batch_size > 0, f"batch_size must be positive, got {self.batch_size}")
        check(rollout % self.batch_size == 0,
              f"batch_size ({self.batch_size}) must divide n_steps * n_envs ({rollout})")
        check(self.n_epochs > 0, f"n_epochs must be positive, got {self.n_epochs}")
        check(self.clip_range > 0, f"clip_range must be positive, got {self.clip_range}")
        check(self.clip_schedule in SCHEDULES,
              f"clip_schedule must be one of {SCHEDULES}, got '{self.clip_schedule}'")
        check(self.clip_range_vf is None or self.clip_range_vf > 0, "clip_range_vf must be positive")
        check(self.target_kl is None or self.target_kl > 0, "target_kl must be positive")


class PPO(OnPolicyAgent):
    """PPO-clip. Terms: policy (clipped surrogate), value (optionally clipped), entropy."""

    algo = "ppo"
    config_cls = PPOConfig

    def _build(self) -> None:
        # Before the base build: the policy term reads the clip range.
        self.clip_range = tf.Variable(self.config.clip_range, trainable=False, name="clip_range")
        super()._build()
        self.schedules["clip_range"] = Scheduled(self.clip_range, self.config.clip_schedule,
                                                 self.config.clip_range)

    def trackables(self) -> dict:
        return dict(super().trackables(), clip_range=self.clip_range)

    def n_epochs(self) -> int:
        return self.config.n_epochs

    def minibatch_size(self) -> int:
        return self.config.batch_size

    def policy_term(self) -> LossTerm:
        return ppo_clip(self.clip_range)

    def value_term(self) -> LossTerm:
        return value_mse(self.config.clip_range_vf)

    train_metric_keys = (*OnPolicyAgent.train_metric_keys, "approx_kl", "clip_fraction")

    def stop_early(self, sums, count):
        if self.config.target_kl is None or "approx_kl" not in sums:  # a replaced policy term
            return tf.constant(False)
        # Mean approx_kl of the minibatches so far (SB3 checks per minibatch; per epoch is
        # steadier and keeps the loop simple).
        return sums["approx_kl"] / tf.maximum(count, 1.0) > 1.5 * self.config.target_kl
