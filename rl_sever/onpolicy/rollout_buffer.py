"""Rollout storage for on-policy agents: preallocated, time-major [n_steps, n_envs, ...]."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np


class Rollout(NamedTuple):
    """One on-policy rollout, time-major [n_steps, n_envs, ...], from the collector (NumPy) or
    the in-graph rollout (tensors) to the compiled update, which takes its fields in this order.
    `next_obs` is the observation actually reached (the true final one at an episode end)."""

    obs: Any
    actions: Any
    rewards: Any
    terminated: Any
    dones: Any
    next_obs: Any

    def __getitem__(self, key):  # batch["obs"] as well as batch.obs and batch[0]
        return getattr(self, key) if isinstance(key, str) else tuple.__getitem__(self, key)

    def items(self):
        return self._asdict().items()

    @classmethod
    def of(cls, batch) -> Rollout:
        """A Rollout from a Rollout or a mapping with its field names."""
        return batch if isinstance(batch, cls) else cls(*(batch[f] for f in cls._fields))


class RolloutBuffer:
    """Transitions of one rollout. `next_obs` is the observation actually reached (the true final
    observation at an episode end), which the agent bootstraps from."""

    def __init__(self, n_steps: int, n_envs: int, obs_shape, obs_dtype, action_shape, action_dtype):
        self.n_steps, self.n_envs = n_steps, n_envs
        self.obs = np.zeros((n_steps, n_envs, *obs_shape), obs_dtype)
        self.next_obs = np.zeros((n_steps, n_envs, *obs_shape), obs_dtype)
        self.actions = np.zeros((n_steps, n_envs, *action_shape), action_dtype)
        self.rewards = np.zeros((n_steps, n_envs), np.float32)
        self.terminated = np.zeros((n_steps, n_envs), bool)
        self.dones = np.zeros((n_steps, n_envs), bool)
        self.pos = 0

    def add(self, obs, action, reward, terminated, truncated, next_obs) -> None:
        t = self.pos
        if t >= self.n_steps:
            raise IndexError("rollout buffer is full; call reset() after the update")
        self.obs[t] = obs
        self.actions[t] = action
        self.rewards[t] = reward
        self.terminated[t] = terminated
        self.dones[t] = np.logical_or(terminated, truncated)
        self.next_obs[t] = next_obs
        self.pos += 1

    @property
    def full(self) -> bool:
        return self.pos == self.n_steps

    def reset(self) -> None:
        self.pos = 0

    def arrays(self) -> Rollout:
        return Rollout(self.obs, self.actions, self.rewards, self.terminated, self.dones,
                       self.next_obs)
