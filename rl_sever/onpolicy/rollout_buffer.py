"""Rollout storage for on-policy agents: the Rollout and its buffer (rl_sever.core.rollout)."""

from rl_sever.core.rollout import Rollout, RolloutBuffer

__all__ = ["Rollout", "RolloutBuffer"]
