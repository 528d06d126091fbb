"""An env whose step waits on I/O: for measuring how env runners scale (bench/scaling.py).

`IOBound/Sleep-v0`: each step sleeps `sleep_ms` (default 5 ms) and costs almost no CPU, so a
2-core machine can host many runners of it, as a cluster of machines would host runners of
a CPU-bound env. Observation: 4 floats from a seeded random walk; action: Box(-1, 1, (1,)),
so every algorithm (PPO, A2C, SAC, TD3, ...) can act on it; reward: minus the squared
distance of the action to the observation's first entry; episodes end after 200 steps.
"""

from __future__ import annotations

import time

import gymnasium as gym
import numpy as np
from gymnasium import spaces

SLEEP_ID = "IOBound/Sleep-v0"
EPISODE_STEPS = 200


class SleepEnv(gym.Env):
    metadata = {"render_modes": []}

    def __init__(self, sleep_ms: float = 5.0, render_mode: str | None = None):
        self.sleep_s = float(sleep_ms) / 1000.0
        self.observation_space = spaces.Box(-np.inf, np.inf, (4,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
        self._obs = np.zeros(4, np.float32)

    def reset(self, *, seed: int | None = None, options=None):
        super().reset(seed=seed)
        self._obs = self.np_random.normal(size=4).astype(np.float32) * 0.1
        return self._obs.copy(), {}

    def step(self, action):
        time.sleep(self.sleep_s)
        reward = -float(np.square(np.asarray(action, np.float32).reshape(-1)[0] - self._obs[0]))
        self._obs = np.clip(self._obs + 0.1 * self.np_random.normal(size=4), -1, 1).astype(
            np.float32)
        return self._obs.copy(), reward, False, False, {}


if SLEEP_ID not in gym.registry:
    gym.register(SLEEP_ID, entry_point=SleepEnv, max_episode_steps=EPISODE_STEPS)
