"""Advantage Actor-Critic (synchronous), on the shared on-policy actor-critic."""

from __future__ import annotations

from dataclasses import dataclass

from rl_sever.config.run import OnPolicyConfig
from rl_sever.objective import LossTerm, policy_gradient
from rl_sever.onpolicy.agent import OnPolicyAgent

__all__ = ["A2C", "A2CConfig"]


@dataclass
class A2CConfig(OnPolicyConfig):
    n_steps: int = 5
    """Steps per env per rollout (one gradient step per rollout)."""
    learning_rate: float = 7e-4
    """Initial learning rate."""
    optimizer: str = "rmsprop"
    """Optimizer: rmsprop (as in the A3C paper and SB3), adam or sgd."""
    gae_lambda: float = 1.0
    """GAE lambda; 1.0 gives n-step returns bootstrapped at the rollout end."""
    normalize_advantage: bool = False
    """Normalise advantages over the rollout."""
    log_every_steps: int = 4000
    """Write TensorBoard scalars at most every this many env steps (A2C iterations are short)."""


class A2C(OnPolicyAgent):
    """A2C: one update per rollout on the whole batch. Terms: policy, value, entropy."""

    algo = "a2c"
    config_cls = A2CConfig

    def policy_term(self) -> LossTerm:
        return policy_gradient()
