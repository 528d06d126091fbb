"""The bit-flipping goal env of the Hindsight Experience Replay paper (Andrychowicz et al. 2017).

The state is a vector of `n_bits` bits, the goal another one; each step flips one bit
(`Discrete(n_bits)`), or with `continuous=True` every bit whose component of a
`Box(-1, 1, (n_bits,))` action is > 0 (the semantics of Stable-Baselines3's BitFlippingEnv).
The reward is sparse: 0 when the state equals the goal, else -1. Reaching the goal ends the
episode (terminated); after `max_steps` steps (default `n_bits`) it is truncated. Start and
goal are drawn uniformly at reset, the goal never equal to the start, so random exploration
almost never sees a reward for n_bits >= 10: the task HER relabelling solves.

Observations follow the goal-env convention: a Dict of "observation", "achieved_goal" and
"desired_goal", each a float32 Box of shape (n_bits,) holding 0/1 (the observation is the
achieved goal). `compute_reward(achieved_goal, desired_goal, info)` recomputes rewards for
relabelled goals, batched over leading axes, equal to the rewards `step` returns.

Registered ids: "BitFlippingContinuous-v0" (15 bits, Box actions) and "BitFlipping-v0" (kwargs
n_bits, continuous, max_steps), e.g.
`gym.make("BitFlipping-v0", n_bits=15, continuous=True)`. The episode limit is the env's own
`max_steps` (it follows n_bits), so the id registers no TimeLimit.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.errors import ConfigError

BIT_FLIPPING_ID = "BitFlipping-v0"
CONTINUOUS_ID = "BitFlippingContinuous-v0"
GOAL_KEYS = ("observation", "achieved_goal", "desired_goal")


class BitFlippingEnv(gym.Env):
    """Flip bits until the state equals the goal (see the module docstring)."""

    metadata: dict[str, Any] = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(self, n_bits: int = 10, continuous: bool = False, max_steps: int | None = None,
                 render_mode: str | None = None):
        if int(n_bits) < 1:
            raise ConfigError(f"n_bits must be >= 1, got {n_bits}")
        self.n_bits = int(n_bits)
        self.max_steps = self.n_bits if max_steps is None else int(max_steps)
        if self.max_steps < 1:
            raise ConfigError(f"max_steps must be >= 1, got {max_steps}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ConfigError(f"render_mode must be None or one of "
                              f"{self.metadata['render_modes']}, got {render_mode!r}")
        self.render_mode = render_mode
        self.continuous = bool(continuous)
        bits = spaces.Box(0.0, 1.0, (self.n_bits,), np.float32)
        self.observation_space = spaces.Dict({key: bits for key in GOAL_KEYS})
        self.action_space = (spaces.Box(-1.0, 1.0, (self.n_bits,), np.float32) if self.continuous
                             else spaces.Discrete(self.n_bits))
        self.state = np.zeros(self.n_bits, np.float32)
        self.goal = np.ones(self.n_bits, np.float32)
        self.steps = 0

    def _observation(self) -> dict[str, np.ndarray]:
        return {"observation": self.state.copy(), "achieved_goal": self.state.copy(),
                "desired_goal": self.goal.copy()}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.state = self.np_random.integers(0, 2, self.n_bits).astype(np.float32)
        self.goal = self.state
        while np.array_equal(self.goal, self.state):
            self.goal = self.np_random.integers(0, 2, self.n_bits).astype(np.float32)
        self.steps = 0
        return self._observation(), {"is_success": False}

    def step(self, action):
        if self.continuous:
            flips = np.asarray(action, np.float32).reshape(-1)
            if flips.shape != (self.n_bits,):
                raise ValueError(f"action of shape {np.shape(action)} is not in {self.action_space}")
            flip = flips > 0
        else:
            bit = int(np.asarray(action).reshape(()))
            if not 0 <= bit < self.n_bits:
                raise ValueError(f"action {action!r} is not in {self.action_space}")
            flip = np.arange(self.n_bits) == bit
        self.state = np.where(flip, 1.0 - self.state, self.state).astype(np.float32)
        self.steps += 1
        reward = float(self.compute_reward(self.state, self.goal, None))
        success = reward == 0.0
        info = {"is_success": success}
        return self._observation(), reward, success, self.steps >= self.max_steps, info

    def compute_reward(self, achieved_goal: Any, desired_goal: Any, info: Any) -> Any:
        """0 where the goals match in every bit, else -1, float32: goals [..., n_bits] ->
        rewards [...] (one pair of goals: a NumPy float32 scalar). `info` is ignored."""
        return self.compute_terminated(achieved_goal, desired_goal, info).astype(np.float32) - 1

    def compute_terminated(self, achieved_goal: Any, desired_goal: Any, info: Any) -> Any:
        """True where the goals match in every bit (success ends the episode)."""
        achieved, desired = np.asarray(achieved_goal), np.asarray(desired_goal)
        if achieved.ndim == 0:  # one bit
            return np.bool_(achieved == desired)
        return ~(achieved != desired).any(axis=-1)

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        bits = "".join(str(int(b)) for b in self.state)
        return f"{bits} -> {''.join(str(int(b)) for b in self.goal)} (step {self.steps})"


def register_bit_flipping() -> None:
    """Register "BitFlipping-v0" and "BitFlippingContinuous-v0" (15 bits, Box actions: the
    setting of the HER paper where learning without HER fails) (idempotent)."""
    if BIT_FLIPPING_ID not in gym.registry:
        gym.register(BIT_FLIPPING_ID, entry_point=BitFlippingEnv)
    if CONTINUOUS_ID not in gym.registry:
        gym.register(CONTINUOUS_ID, entry_point=BitFlippingEnv,
                     kwargs={"n_bits": 15, "continuous": True})


register_bit_flipping()
