"""DDPG (Lillicrap et al. 2016): a deterministic tanh actor trained through one critic.

As in Stable-Baselines3, DDPG is TD3 (agents/td3.py) with TD3's three additions switched off:
one critic instead of the minimum of two, no target policy smoothing, and the actor and the
target networks updated at every critic update. The losses (critic: squared error to a severed
TD target from the target actor and critic; actor: -Q(s, mu(s))) and their flow contract are
TD3's.
"""

from __future__ import annotations

from dataclasses import dataclass

from agents.td3 import TD3, TD3Config

__all__ = ["DDPG", "DDPGConfig"]


@dataclass
class DDPGConfig(TD3Config):
    policy_delay: int = 1
    """Update the actor and the targets once every this many critic updates."""
    target_policy_noise: float = 0.0
    """Std of the Gaussian noise added to the target action (0: no target smoothing)."""
    n_critics: int = 1
    """Number of Q-functions."""


class DDPG(TD3):
    """DDPG: TD3 with one critic, no target smoothing and no actor delay."""

    algo = "ddpg"
    config_cls = DDPGConfig
