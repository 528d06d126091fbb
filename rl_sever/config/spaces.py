"""What rl_sever supports of Gymnasium spaces, with clear errors for the rest."""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from rl_sever.errors import UnsupportedSpaceError


@dataclass(frozen=True)
class ActionSpec:
    """The action space reduced to what a policy head needs."""

    kind: str  # "discrete" | "multidiscrete" | "box"
    shape: tuple[int, ...]  # shape of one action
    n: int = 0  # discrete: number of actions
    nvec: tuple[int, ...] = ()  # multidiscrete: choices per component
    low: np.ndarray | None = None  # box bounds, for clipping when stepping the env
    high: np.ndarray | None = None

    @property
    def dtype(self) -> str:
        return "float32" if self.kind == "box" else "int32"

    @property
    def mask_dim(self) -> int:
        """Width of an action mask: one bool per choice (0 for Box actions, which have none)."""
        return self.n if self.kind == "discrete" else int(sum(self.nvec))

    def env_actions(self, actions: np.ndarray) -> np.ndarray:
        """Gaussian actions clipped to the bounds (only when stepping, never in log-probs)."""
        if self.kind == "box":
            return np.clip(actions, self.low, self.high)
        return actions


def action_spec(space: gym.Space) -> ActionSpec:
    if isinstance(space, gym.spaces.Discrete):
        if int(space.start) != 0:
            raise UnsupportedSpaceError(f"Discrete action spaces must start at 0, got start={space.start}")
        return ActionSpec("discrete", (), n=int(space.n))
    if isinstance(space, gym.spaces.MultiDiscrete):
        if space.nvec.ndim != 1:
            raise UnsupportedSpaceError("only 1-D MultiDiscrete action spaces are supported")
        return ActionSpec("multidiscrete", (len(space.nvec),), nvec=tuple(int(n) for n in space.nvec))
    if isinstance(space, gym.spaces.Box):
        if len(space.shape) != 1:
            raise UnsupportedSpaceError(f"Box action spaces must be 1-D, got shape {space.shape}")
        return ActionSpec("box", tuple(space.shape), low=space.low.astype(np.float32),
                          high=space.high.astype(np.float32))
    raise UnsupportedSpaceError(f"unsupported action space {space}; rl_sever supports Discrete, "
                                "MultiDiscrete and 1-D Box")


def observation_shape(space: gym.Space) -> tuple[int, ...] | dict[str, tuple[int, ...]]:
    """Shape of one observation (a Dict's: key -> shape); the env factory has already
    flattened Tuple spaces and Dicts without images (envs.dict_obs)."""
    if isinstance(space, gym.spaces.Box):
        return tuple(space.shape)
    if isinstance(space, gym.spaces.Dict) and all(
            isinstance(s, gym.spaces.Box) for s in space.spaces.values()):
        return {k: tuple(s.shape) for k, s in space.spaces.items()}
    raise UnsupportedSpaceError(f"unsupported observation space {space}; use Box, or Dict/Tuple "
                                "of Box/Discrete spaces (envs.make_vec_env flattens those)")


def observation_dtype(space: gym.Space):
    """NumPy dtype of one observation (a Dict's: key -> dtype)."""
    if isinstance(space, gym.spaces.Dict):
        return {k: np.dtype(s.dtype) for k, s in space.spaces.items()}
    return np.dtype(space.dtype)
