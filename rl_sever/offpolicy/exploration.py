"""The off-policy pages' exploration in NumPy, without TensorFlow: unit actions in [-1, 1] from
the actor's output and a generator. A page names its own (`host_exploration`); env runners
act with it on the actor's NumPy forward, in a process with or without TensorFlow
(rl_sever.runners.runner, rl_sever.runners.host_runner).
"""

from __future__ import annotations

import numpy as np

from rl_sever.nn.host_math import LOG_STD_MAX, LOG_STD_MIN, NUMPY_ACTIVATIONS, mlp_forward


def squashed_gaussian(out: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """tanh of a draw from N(mean, exp(log_std)), `out` holding [mean, log_std] (SAC's)."""
    mean, log_std = np.split(out, 2, axis=-1)
    std = np.exp(np.clip(log_std, LOG_STD_MIN, LOG_STD_MAX))
    return np.tanh(mean + std * rng.standard_normal(mean.shape)).astype(np.float32)


def tanh_with_noise(out: np.ndarray, rng: np.random.Generator, noise: float) -> np.ndarray:
    """tanh(`out`) plus Gaussian noise of scale `noise`, clipped to [-1, 1] (TD3's)."""
    actions = np.tanh(out)
    if noise > 0:
        actions = np.clip(actions + noise * rng.standard_normal(actions.shape), -1.0, 1.0)
    return actions.astype(np.float32)


def unit_to_env(mid, half, unit_actions):
    """Unit actions ([-1, 1], NumPy or tensors) in env units: the env sees mid + half * a."""
    return mid + half * unit_actions


class NumpyActor:
    """An MLP actor in NumPy on the weights each call gives ([kernel, bias, ...], the arrays of
    the agent's acting variables), and `explore(out, rng)` making unit actions of its output."""

    def __init__(self, activation: str, activate_last: bool, explore):
        self.activation, self.activate_last, self.explore = activation, activate_last, explore

    def __call__(self, obs, weights, rng: np.random.Generator) -> np.ndarray:
        return self.bind(weights)(obs, rng)

    def bind(self, weights):
        """`obs, rng -> unit actions` on `weights`, paired into layers once (a chunk's steps
        all act on the same weights)."""
        layers = list(zip(weights[0::2], weights[1::2]))
        activation = NUMPY_ACTIVATIONS[self.activation]

        def act(obs, rng: np.random.Generator) -> np.ndarray:
            x = np.asarray(obs, np.float32).reshape(len(obs), -1)
            out = mlp_forward(x, layers, activation, activate_last=self.activate_last)
            return self.explore(out, rng)

        return act
