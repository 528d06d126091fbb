"""Pixel observations: area resizing, frame stacking, registered ids, vector-env episode ends."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from envs import make_vec_env
from envs.pixels import PixelObservation, area_resize
from rl_sever.errors import ConfigError


def test_area_resize_averages_blocks():
    frame = np.arange(4 * 6 * 1, dtype=np.uint8).reshape(4, 6, 1)
    out = area_resize(frame, 2, 3)
    expected = frame.astype(float).reshape(2, 2, 3, 2, 1).mean(axis=(1, 3))
    np.testing.assert_array_equal(out, np.rint(expected).astype(np.uint8))
    assert area_resize(frame, 4, 6) is frame
    with pytest.raises(ConfigError):
        area_resize(frame, 8, 6)


def test_frames_are_stacked_on_channels():
    env = gym.make("Pixels/Pendulum-v1", size=16, frame_stack=3)
    assert env.observation_space.shape == (16, 16, 9) and env.observation_space.dtype == np.uint8
    obs, _ = env.reset(seed=0)
    assert obs.shape == (16, 16, 9)
    np.testing.assert_array_equal(obs[..., 0:3], obs[..., 6:9])  # reset repeats the first frame
    previous_newest = obs[..., 6:9]
    for _ in range(3):
        obs, *_ = env.step(np.array([2.0], np.float32))
    assert not np.array_equal(obs[..., 6:9], previous_newest)  # the pendulum moved
    env.close()


def test_grayscale_and_other_classic_control_ids():
    env = gym.make("Pixels/CartPole-v1", size=12, frame_stack=2, grayscale=True)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (12, 12, 2) and obs.dtype == np.uint8
    env.close()
    with pytest.raises(ConfigError):
        PixelObservation(gym.make("Pendulum-v1"))  # no rgb_array render mode


def test_vector_env_returns_final_pixel_observations():
    env = make_vec_env("Pixels/Pendulum-v1", 2, seed=0, env_kwargs={"size": 8, "frame_stack": 2})
    obs, _ = env.reset()
    assert obs.shape == (2, 8, 8, 6)
    for _ in range(200):
        obs, _, terminated, truncated, info = env.step(np.zeros((2, 1), np.float32))
    assert truncated.all() and not terminated.any()
    assert info["_final_obs"].all() and info["final_obs"][0].shape == (8, 8, 6)
    env.close()
