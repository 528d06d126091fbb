"""ale-py's C++ vector env (`ale_py.AtariVectorEnv`) as a vectorization mode for Atari games
(`vectorization="ale"`): the games step in C++ threads, which also skip, max-pool, resize,
grayscale, stack frames, take the no-ops and press FIRE.

Episodic life and reward clipping (training only) happen here, not in C++, so raw rewards and
true game ends are seen: whole games go to `info["final_info"]["game"]` as in envs.atari.GameScore.
Frames are HWC as from `envs.atari.preprocess`, not bit-identical (ale-py resizes its own way).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv

from envs.atari import AtariSettings, register


class AleVectorEnv(VectorEnv):
    """`n_envs` copies of an ale-py game stepped by ale-py's C++ vector env (SAME_STEP)."""

    def __init__(self, env_id: str, n_envs: int, settings: AtariSettings, *, training: bool = True,
                 **kwargs: Any):
        import ale_py

        register()
        spec = gym.registry[env_id]
        s, self.settings, self.training = settings, settings, training
        self.env = ale_py.AtariVectorEnv(
            spec.kwargs["game"], n_envs, autoreset_mode=AutoresetMode.SAME_STEP,
            repeat_action_probability=kwargs.get(
                "repeat_action_probability", spec.kwargs.get("repeat_action_probability", 0.0)),
            img_height=s.screen_size, img_width=s.screen_size, stack_num=s.frame_stack,
            frameskip=s.frame_skip, noop_max=s.noop_max, use_fire_reset=s.fire_reset,
            episodic_life=False, reward_clipping=False)
        self.num_envs, self.spec = n_envs, spec
        self.metadata = {"autoreset_mode": AutoresetMode.SAME_STEP}
        shape = (s.screen_size, s.screen_size, s.frame_stack)
        self.single_observation_space = spaces.Box(0, 255, shape, np.uint8)
        self.single_action_space = self.env.single_action_space
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, n_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, n_envs)
        self.score = np.zeros(n_envs)
        self.length = np.zeros(n_envs, np.int64)
        self.lives = np.zeros(n_envs, np.int64)

    def reset(self, *, seed=None, options=None):
        obs, info = self.env.reset(seed=seed, options=options)
        self.score[:], self.length[:] = 0.0, 0
        self.lives = np.asarray(info["lives"], np.int64)
        return np.moveaxis(obs, 1, -1), {}

    def step(self, actions):
        obs, reward, terminated, truncated, info = self.env.step(np.asarray(actions))
        reward = np.asarray(reward, np.float64)
        self.score += reward
        self.length += 1
        ended = np.asarray(terminated) | np.asarray(truncated)
        lives = np.asarray(info["lives"], np.int64)
        out: dict[str, Any] = {}
        if ended.any():
            out = {"final_obs": np.moveaxis(info["final_obs"], 1, -1), "_final_obs": ended,
                   "final_info": {"game": {"r": self.score.copy(), "l": self.length.copy()},
                                  "_game": ended}, "_final_info": ended}
            self.score[ended], self.length[ended] = 0.0, 0
        if self.training:
            if self.settings.episodic_life:  # the game goes on; the learner's episode ends
                terminated = np.asarray(terminated) | ((lives < self.lives) & (lives > 0))
            if self.settings.clip_reward:
                reward = np.sign(reward)
        self.lives = lives
        return (np.moveaxis(obs, 1, -1), reward.astype(np.float32), terminated, truncated, out)

    def close_extras(self, **kwargs):
        self.env.close()
