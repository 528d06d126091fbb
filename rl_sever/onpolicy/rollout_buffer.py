"""Rollout storage for on-policy agents: preallocated, time-major [n_steps, n_envs, ...], one
array per field of the Rollout (rl_sever.core.rollout), typed from its declaration."""

from __future__ import annotations

from rl_sever.core.batch import Layout
from rl_sever.core.rollout import Rollout, Step

__all__ = ["Rollout", "RolloutBuffer"]


class RolloutBuffer:
    """The Steps of one rollout. `next_obs` is the observation actually reached (the true final
    observation at an episode end), which the agent bootstraps from."""

    def __init__(self, n_steps: int, n_envs: int, layout: Layout):
        self.n_steps, self.n_envs = n_steps, n_envs
        self.data = Rollout.zeros(layout, (n_steps, n_envs))
        self.pos = 0

    def add(self, step: Step) -> None:
        t = self.pos
        if t >= self.n_steps:
            raise IndexError("rollout buffer is full; call reset() after the update")
        for array, value in zip(self.data, Rollout.row(step)):
            array[t] = value
        self.pos += 1

    @property
    def full(self) -> bool:
        return self.pos == self.n_steps

    def reset(self) -> None:
        self.pos = 0

    def arrays(self) -> Rollout:
        return self.data
