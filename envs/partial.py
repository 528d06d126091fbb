"""Partially observable classic-control envs: the velocities are removed from the observation.

`KeepIndices` keeps the listed components of a 1-D Box observation (float32, the Box bounds
sliced the same way). Applied to the position components of an env whose state holds
positions and velocities, a single observation no longer determines the state: a policy has to
remember (an LSTM, a frame stack) or infer the velocities from successive observations.

Registered ids: "NoVel/<EnvId>" for the envs below, with the components kept:

    CartPole-v1                 x, theta                       (indices 0, 2)
    Pendulum-v1                 cos(theta), sin(theta)         (indices 0, 1)
    LunarLander-v3              x, y, angle, leg contacts      (indices 0, 1, 4, 6, 7)
    LunarLanderContinuous-v3    x, y, angle, leg contacts      (indices 0, 1, 4, 6, 7)

and rl-baselines3-zoo's names for them as aliases: "CartPoleNoVel-v1", "PendulumNoVel-v1",
"LunarLanderNoVel-v3", "LunarLanderContinuousNoVel-v3" (the zoo's RecurrentPPO presets). Unlike
the zoo's MaskVelocityWrapper, which multiplies the velocities by zero and keeps the shape, the
velocities are dropped here: CartPoleNoVel-v1 observes 2 numbers, not 4.

`gym.make("NoVel/Pendulum-v1", g=9.81)` passes keyword arguments (and render_mode) to the base
env; the episode limit is the base env's (CartPole 500, Pendulum 200, LunarLander 1000 steps),
held by the TimeLimit of the registered id, so `max_episode_steps=` overrides it as usual.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.envs.registration import parse_env_id

from envs.errors import ConfigError

NO_VEL_NAMESPACE = "NoVel"
POSITION_INDICES: dict[str, tuple[int, ...]] = {
    "CartPole-v1": (0, 2),
    "Pendulum-v1": (0, 1),
    "LunarLander-v3": (0, 1, 4, 6, 7),
    "LunarLanderContinuous-v3": (0, 1, 4, 6, 7),
}


class KeepIndices(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Observations keep only the components `indices` of a 1-D Box, as float32 (recorded in
    the env's spec, so `gym.make(env.spec)` rebuilds it)."""

    def __init__(self, env: gym.Env, indices: Sequence[int]):
        gym.utils.RecordConstructorArgs.__init__(self, indices=tuple(int(i) for i in indices))
        gym.ObservationWrapper.__init__(self, env)
        space = env.observation_space
        if not isinstance(space, spaces.Box) or len(space.shape) != 1:
            raise ConfigError(f"KeepIndices needs a 1-D Box observation space, got {space}")
        keep = [int(i) for i in indices]
        size = space.shape[0]
        if not keep or len(set(keep)) != len(keep) or not all(0 <= i < size for i in keep):
            raise ConfigError(f"indices must be distinct, in [0, {size}) and not empty, "
                              f"got {list(indices)}")
        self.indices = np.array(keep, np.intp)
        self.observation_space = spaces.Box(space.low[self.indices].astype(np.float32),
                                            space.high[self.indices].astype(np.float32),
                                            (len(keep),), np.float32)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return np.asarray(observation, np.float32)[self.indices]


def make_no_vel_env(env_id: str, keep: Sequence[int], render_mode: str | None = None,
                    **kwargs: Any) -> gym.Env:
    """`env_id` (without its TimeLimit: the registered id adds one) observing only `keep`;
    extra kwargs go to the base env."""
    spec = dataclasses.replace(gym.spec(env_id), max_episode_steps=None)
    env = gym.make(spec, render_mode=render_mode, disable_env_checker=True, **kwargs)
    return KeepIndices(env, keep)


def alias_of(env_id: str) -> str:
    """rl-baselines3-zoo's name of the velocity-free `env_id`: CartPole-v1 -> CartPoleNoVel-v1."""
    namespace, name, version = parse_env_id(env_id)
    prefix = f"{namespace}/" if namespace else ""
    return f"{prefix}{name}NoVel" + (f"-v{version}" if version is not None else "")


def register_no_vel_envs(indices: dict[str, tuple[int, ...]] | None = None) -> None:
    """Register "NoVel/<id>" and its zoo alias for each id (idempotent); the base env's episode
    limit and reward threshold carry over."""
    for env_id, keep in (POSITION_INDICES if indices is None else indices).items():
        base = gym.spec(env_id)
        for new_id in (f"{NO_VEL_NAMESPACE}/{env_id}", alias_of(env_id)):
            if new_id not in gym.registry:
                gym.register(new_id, entry_point=make_no_vel_env,
                             kwargs={"env_id": env_id, "keep": tuple(keep)},
                             max_episode_steps=base.max_episode_steps,
                             reward_threshold=base.reward_threshold)


register_no_vel_envs()
