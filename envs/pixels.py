"""Image observations from classic-control environments: rendered, resized, frame-stacked.

`PixelObservation` replaces an env's observation by its `rgb_array` render, shrunk to
`size` x `size` by area averaging (optionally grayscale), with the last `frame_stack` frames
concatenated on the channel axis: a uint8 HWC Box that rl_sever agents feed to a CNN encoder.
Stacked frames carry the velocities a single frame lacks.

Registered ids: "Pixels/<EnvId>" for the classic-control envs below, e.g.
`make_vec_env("Pixels/Pendulum-v1", 1)` or `rl-sever train sac Pixels/Pendulum-v1`; keyword
arguments (size, frame_stack, grayscale) go through `gym.make(..., size=48)`.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.errors import ConfigError

PIXEL_NAMESPACE = "Pixels"
CLASSIC_CONTROL = ("Pendulum-v1", "MountainCarContinuous-v0", "CartPole-v1", "Acrobot-v1",
                   "MountainCar-v0")
_GRAY = np.array([0.299, 0.587, 0.114], np.float32)


def area_resize(frame: np.ndarray, height: int, width: int) -> np.ndarray:
    """Shrink an HWC image by averaging the source pixels that fall into each target pixel."""
    h, w = frame.shape[:2]
    if (h, w) == (height, width):
        return frame
    if height > h or width > w:
        raise ConfigError(f"cannot enlarge a {h}x{w} frame to {height}x{width}")
    rows = np.linspace(0, h, height + 1).astype(int)
    cols = np.linspace(0, w, width + 1).astype(int)
    x = np.add.reduceat(frame.astype(np.float32), rows[:-1], axis=0)
    x = np.add.reduceat(x, cols[:-1], axis=1)
    x /= np.outer(np.diff(rows), np.diff(cols))[..., None]
    return np.rint(x).astype(np.uint8)


class PixelObservation(gym.Wrapper):
    """Observations become the last `frame_stack` rendered frames, `size` x `size` uint8."""

    def __init__(self, env: gym.Env, size: int = 64, frame_stack: int = 3, grayscale: bool = False):
        super().__init__(env)
        if env.render_mode != "rgb_array":
            raise ConfigError(f"PixelObservation needs render_mode='rgb_array', "
                              f"got {env.render_mode!r}")
        if size < 8 or frame_stack < 1:
            raise ConfigError(f"size must be >= 8 and frame_stack >= 1, got {size}, {frame_stack}")
        self.size, self.frame_stack, self.grayscale = int(size), int(frame_stack), bool(grayscale)
        base = env.unwrapped
        if hasattr(base, "screen_dim"):
            # Pendulum scales its drawing to screen_dim: render at twice the target size
            # instead of 500x500 (3x faster), then average 2x2 blocks.
            base.screen_dim = 2 * self.size
        channels = (1 if self.grayscale else 3) * self.frame_stack
        self.observation_space = spaces.Box(0, 255, (self.size, self.size, channels), np.uint8)
        self._frames: deque[np.ndarray] = deque(maxlen=self.frame_stack)

    def _frame(self) -> np.ndarray:
        frame = np.asarray(self.env.render())
        frame = area_resize(frame, self.size, self.size)
        if self.grayscale:
            frame = np.rint(frame.astype(np.float32) @ _GRAY)[..., None].astype(np.uint8)
        return frame

    def _observation(self) -> np.ndarray:
        return np.concatenate(list(self._frames), axis=-1)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        _, info = self.env.reset(seed=seed, options=options)
        self._frames.extend([self._frame()] * self.frame_stack)
        return self._observation(), info

    def step(self, action):
        _, reward, terminated, truncated, info = self.env.step(action)
        self._frames.append(self._frame())
        return self._observation(), reward, terminated, truncated, info


def make_pixel_env(env_id: str, size: int = 64, frame_stack: int = 3, grayscale: bool = False,
                   render_mode: str | None = None, **kwargs: Any) -> gym.Env:
    """`env_id` rendered to pixels (see PixelObservation); extra kwargs go to gym.make."""
    if render_mode not in (None, "rgb_array"):
        raise ConfigError(f"pixel envs render to rgb_array themselves; "
                          f"got render_mode={render_mode!r}")
    env = gym.make(env_id, render_mode="rgb_array", **kwargs)
    return PixelObservation(env, size=size, frame_stack=frame_stack, grayscale=grayscale)


def register_pixel_envs(env_ids: tuple[str, ...] = CLASSIC_CONTROL) -> None:
    """Register "Pixels/<id>" for each id (idempotent)."""
    for env_id in env_ids:
        pixel_id = f"{PIXEL_NAMESPACE}/{env_id}"
        if pixel_id not in gym.registry:
            gym.register(pixel_id, entry_point=make_pixel_env, kwargs={"env_id": env_id},
                         disable_env_checker=True)


register_pixel_envs()


def is_image_space(space: spaces.Space) -> bool:
    """True for uint8 Box observations of rank 3 (HWC images), which are never flattened."""
    return isinstance(space, spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3
