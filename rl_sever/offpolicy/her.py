"""Hindsight experience replay (Andrychowicz et al. 2017; config `her`, docs/spaces.md).

A goal-conditioned env observes a Dict with `observation`, `achieved_goal` and `desired_goal`
and rewards through `compute_reward(achieved_goal, desired_goal, info)`. Its observations reach
the agent flattened (the keys' values concatenated in the Dict's order, `GoalLayout` knows where
each goal lies). `HerReplayBuffer` stores transitions as the replay buffer does, plus where each
transition's episode starts and ends; a sampled transition gets, with probability
n_sampled_goal / (n_sampled_goal + 1), a new desired goal in both its observations: the goal
achieved at a later step of the same episode (`future`), at its last step (`final`) or at any of
its steps (`episode`), and the reward the env's `compute_reward` gives for it (in one batched
call). Episodes still running count up to the newest stored step; an episode the ring has
partly overwritten, from its oldest stored step; an episode that crosses the buffer's end wraps
with it; one longer than the ring keeps all its stored rows. The episode bounds are saved with
the buffer; a resumed run restarts its envs, so the episodes running at the save end at the
newest stored step.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import tensorflow as tf
from gymnasium import spaces

from rl_sever.errors import ConfigError
from rl_sever.offpolicy.replay import ReplayBuffer, Transitions

GOAL_KEYS = ("observation", "achieved_goal", "desired_goal")


class GoalLayout:
    """Where the achieved and desired goals lie in a flattened goal observation, and the env's
    reward function."""

    def __init__(self, space: spaces.Dict, compute_reward):
        self.slices, start = {}, 0
        for key, sub in space.spaces.items():
            size = spaces.flatdim(sub)
            self.slices[key] = slice(start, start + size)
            start += size
        self.size, self.compute_reward = start, compute_reward
        self.achieved, self.desired = self.slices["achieved_goal"], self.slices["desired_goal"]

    def rewards(self, achieved: np.ndarray, desired: np.ndarray) -> np.ndarray:
        """The env's rewards for reaching `achieved` when `desired` was the goal ([B, g])."""
        infos = np.array([{} for _ in range(len(achieved))])
        return np.asarray(self.compute_reward(achieved, desired, infos), np.float32).reshape(-1)


def goal_layout(env, env_id: str, obs_size: int) -> GoalLayout:
    """The GoalLayout of the vector env `env` (its sub-envs', or a fresh `env_id` env's); a
    ConfigError naming what is missing when the env is not goal-conditioned."""
    base = getattr(env, "unwrapped", env)
    subs = getattr(base, "envs", None)
    if subs:
        single = subs[0].unwrapped
    else:  # sub-envs in other processes: one local env for the space and compute_reward
        try:
            single = gym.make(env_id).unwrapped
        except gym.error.Error as e:
            raise ConfigError(f"her: cannot make {env_id!r} locally for its compute_reward: {e}") from None
    space = single.observation_space
    keys = list(space.spaces) if isinstance(space, spaces.Dict) else []
    if not set(GOAL_KEYS) <= set(keys) or not callable(getattr(single, "compute_reward", None)):
        raise ConfigError(f"her needs a goal-conditioned env: a Dict observation with keys "
                          f"{', '.join(GOAL_KEYS)} and a compute_reward method; {env_id!r} has "
                          f"{'keys ' + ', '.join(keys) if keys else type(space).__name__} "
                          f"{'and' if callable(getattr(single, 'compute_reward', None)) else 'and no'}"
                          " compute_reward")
    layout = GoalLayout(space, single.compute_reward)
    if layout.size != obs_size:
        raise ConfigError(f"her: the flattened goal observation has {layout.size} values, the "
                          f"agent's {obs_size} (a wrapper changed the observation)")
    return layout


class HerReplayBuffer(ReplayBuffer):
    """The replay buffer with hindsight goals (see the module docstring)."""

    row_fields = (*ReplayBuffer.row_fields, "ep_start", "ep_end")

    def __init__(self, *args, goals: GoalLayout, strategy: str = "future",
                 n_sampled_goal: int = 4, **kwargs):
        super().__init__(*args, **kwargs)
        if self.share_frames or self.n_step != 1:
            raise ConfigError("her needs vector observations and one-step returns")
        self.goals, self.strategy = goals, strategy
        self.her_ratio = n_sampled_goal / (n_sampled_goal + 1.0)
        # Per stored transition: the row its episode started at, and the row it ended at (-1
        # while it runs); per sub-env: the row its current episode started at.
        self.ep_start = np.zeros((self.rows, self.n_envs), np.int32)
        self.ep_end = np.full((self.rows, self.n_envs), -1, np.int32)
        self.cur_start = np.zeros(self.n_envs, np.int32)
        self.cur_len = np.zeros(self.n_envs, np.int64)  # steps of each current episode so far

    def add(self, step) -> None:
        t = self.pos
        super().add(step)
        self.ep_start[t], self.ep_end[t] = self.cur_start, -1
        self.cur_len += 1
        for e in np.flatnonzero(self.dones[t]):
            self._end_episode(e, t)

    def cut_episodes(self, envs) -> None:
        super().cut_episodes(envs)
        if self.filled_rows:
            for e in envs:
                if self.cur_len[e]:
                    self._end_episode(e, (self.pos - 1) % self.rows)

    def _end_episode(self, e: int, t: int) -> None:
        """Sub-env `e`'s episode ended at row `t`: its stored rows (all of them, for an episode
        longer than the ring) learn where it ended."""
        length = min(int(self.cur_len[e]), self.rows)
        self.ep_end[(t - np.arange(length)) % self.rows, e] = t
        self.cur_start[e], self.cur_len[e] = (t + 1) % self.rows, 0

    def goal_rows(self, t: np.ndarray, e: np.ndarray) -> np.ndarray:
        """Rows whose reached observation's achieved goal relabels the transitions (t, e)."""
        newest = (self.pos - 1) % self.rows
        end = np.where(self.ep_end[t, e] < 0, newest, self.ep_end[t, e])
        if self.strategy == "final":
            return end
        start = t
        if self.strategy == "episode":
            oldest = self.pos if self.full else 0
            start = self.ep_start[t, e]
            # An episode whose first steps the ring overwrote begins at the oldest stored row.
            start = np.where((start - oldest) % self.rows > (t - oldest) % self.rows, oldest, start)
        span = (end - start) % self.rows + 1
        return (start + (self.rng.random(len(t)) * span).astype(np.int64)) % self.rows

    def gather(self, t: np.ndarray, e: np.ndarray, *, one_step: bool = False) -> Transitions:
        batch = super().gather(t, e, one_step=one_step)
        idx = np.flatnonzero(self.rng.random(len(t)) < self.her_ratio)
        if idx.size == 0:
            return batch
        g = self.goals
        new_goals = self.next_observations(self.goal_rows(t[idx], e[idx]), e[idx])[:, g.achieved]
        obs, next_obs, rewards = batch.obs, batch.next_obs, batch.rewards.copy()
        obs[idx, g.desired] = new_goals
        next_obs[idx, g.desired] = new_goals
        rewards[idx] = g.rewards(next_obs[idx, g.achieved], new_goals)
        return batch._replace(obs=obs, next_obs=next_obs, rewards=rewards)

    def _arrays(self) -> dict[str, np.ndarray]:
        return {**super()._arrays(), "cur_start": self.cur_start, "cur_len": self.cur_len}

    def load(self, directory) -> None:
        """Restore a saved buffer. A loaded agent restarts its envs, so the episodes running
        at the save end at the newest stored row: no later episode extends them."""
        super().load(directory)
        self.cur_start[:] = np.load(f"{directory}/cur_start.npy", allow_pickle=False)
        self.cur_len[:] = np.load(f"{directory}/cur_len.npy", allow_pickle=False)
        if self.filled_rows:
            newest = (self.pos - 1) % self.rows
            for e in np.flatnonzero(self.cur_len):
                self._end_episode(e, newest)
        self.cur_start[:], self.cur_len[:] = self.pos, 0


def make_replay(agent, share_frames: bool) -> ReplayBuffer:
    """The agent's replay buffer on a Gymnasium env: with hindsight goals when config `her`
    asks for them (a ConfigError when the env has no goals)."""
    cfg = agent.config
    args = (cfg.buffer_size, cfg.n_envs, agent.obs_shape,
            tf.nest.map_structure(lambda d: d.as_numpy_dtype, agent.obs_dtype),
            agent.action.shape, np.float32)
    kwargs = dict(n_step=cfg.n_step, gamma=cfg.gamma, seed=cfg.seed, share_frames=share_frames)
    if cfg.her.strategy == "none":
        return ReplayBuffer(*args, **kwargs)
    if isinstance(agent.obs_shape, dict):
        raise ConfigError("her: goal observations with image keys are not supported (a Dict of "
                          "vectors is flattened, and works)")
    goals = goal_layout(agent.env, agent.env_id, int(np.prod(agent.obs_shape)))
    return HerReplayBuffer(*args, goals=goals, strategy=cfg.her.strategy,
                           n_sampled_goal=cfg.her.n_sampled_goal, **kwargs)
