"""A Gymnasium ``VectorEnv`` view over a batched TF-native environment.

Behaves like ``gym.make_vec(id, n, vectorization_mode="sync", vector_kwargs={"autoreset_mode":
AutoresetMode.SAME_STEP})``: same spaces, numpy outputs with the same dtypes (float32 obs,
float64 rewards, bool flags) and the same SAME_STEP infos (``final_obs`` object array with
``None`` for envs that did not end, ``_final_obs`` mask, empty ``final_info`` with its mask;
``{}`` when no env ended). Each ``step`` is one compiled ``tf.function`` call.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

import gymnasium as gym
import numpy as np
import tensorflow as tf
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from envs.tfnative.base import EnvState, TFEnv, as_key


class TFNativeVectorEnv(gym.vector.VectorEnv):
    """n copies of a TFEnv behind the Gymnasium vector API (SAME_STEP autoreset).

    ``reset(seed=s)`` with an int seed is deterministic; ``reset()`` without a seed continues
    the RNG stream (the first one uses the constructor's ``seed``, or OS entropy if None).
    Per-env seed lists and reset ``options`` are not supported.
    """

    def __init__(self, env: TFEnv, num_envs: int, seed: int | None = None, *,
                 jit_compile: bool = False) -> None:
        """``jit_compile`` compiles the step with XLA: lower call latency on CPU at small n, at
        the price of a compile on first use and FMA-level rounding differences (still within
        1e-5 of Gymnasium over random-action episodes)."""
        super().__init__()
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.env = env
        self.num_envs = int(num_envs)
        self.metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.SAME_STEP}
        self.render_mode = None
        self.autoreset_mode = AutoresetMode.SAME_STEP
        self.single_observation_space = env.observation_space()
        self.single_action_space = env.action_space()
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        # Gymnasium's registration of the mirrored id, so code reading .spec.id or
        # .spec.max_episode_steps (run names, eval) works unchanged.
        try:
            self.spec = copy.deepcopy(gym.spec(env.name))
            self.spec.max_episode_steps = env.max_episode_steps
        except gym.error.Error:
            self.spec = None

        if seed is None:
            seed = np.random.SeedSequence().entropy
        self._first_key = as_key(seed)
        self._state: EnvState | None = None
        self._action_np_dtype = np.int64 if env.is_discrete else np.float32

        n = self.num_envs

        def reset_fn(key: tf.Tensor) -> tuple[EnvState, tf.Tensor]:
            state = env.reset(key, n)
            return state, env.observe(state)

        # Fixed signatures, each traced once, on first use (an agent training in-graph never
        # steps this view), as written: the envs branch with tf.where, so AutoGraph's rewriting
        # would only cost time (about 0.5 s of a tf: CartPole run). Calling the concrete
        # functions skips tf.function's per-call signature matching, which costs about as much
        # as the step itself at small n.
        self._reset_fn = tf.function(reset_fn, input_signature=[tf.TensorSpec([2], tf.int64)],
                                     autograph=False)
        self._step_fn = tf.function(env.step_autoreset,
                                    input_signature=[env.state_spec(n), env.action_spec(n)],
                                    jit_compile=jit_compile, autograph=False)
        # One view per evaluation: TensorFlow's "frequent retracing" warning (it counts traces
        # per code object, across views) would be a false alarm (rl_sever.core.compiled.per_agent).
        for fn in (self._reset_fn, self._step_fn):
            fn._omit_frequent_tracing_warning = True

    @functools.cached_property
    def _reset_concrete(self):
        return self._reset_fn.get_concrete_function()

    @functools.cached_property
    def _step_concrete(self):
        return self._step_fn.get_concrete_function()

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Start new episodes in all envs; returns (obs [n, *obs_shape] float32, {})."""
        if options:
            raise ValueError(f"reset options are not supported by {type(self).__name__}")
        if seed is not None and not isinstance(seed, (int, np.integer)):
            raise TypeError(f"seed must be an int or None, got {type(seed).__name__}")
        super().reset(seed=seed)
        if seed is not None:
            key = as_key(seed)
        elif self._state is not None:
            key = self._state.key
        else:
            key = self._first_key
        self._state, obs = self._reset_concrete(key)
        return obs.numpy(), {}

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step all envs; envs that end are reset in the same step (see module docstring)."""
        if self._state is None:
            raise RuntimeError("Call reset() before step().")
        actions = np.asarray(actions)
        if actions.shape != self.action_space.shape:
            raise ValueError(f"actions must have shape {self.action_space.shape}, "
                             f"got {actions.shape}")
        if self.env.is_discrete and not (
                np.issubdtype(actions.dtype, np.integer)
                and np.all((actions >= 0) & (actions < self.env.n_actions))):
            raise ValueError(f"actions must be ints in [0, {self.env.n_actions}): {actions}")
        self._state, obs, reward, terminated, truncated, final_obs = self._step_concrete(
            self._state, tf.convert_to_tensor(actions.astype(self._action_np_dtype, copy=False)))
        terminated, truncated = terminated.numpy(), truncated.numpy()
        done = terminated | truncated
        infos: dict[str, Any] = {}
        if done.any():
            final_np = final_obs.numpy()
            final = np.full(self.num_envs, None, dtype=object)
            for i in np.flatnonzero(done):
                final[i] = final_np[i]
            infos = {"final_obs": final, "_final_obs": done.copy(), "final_info": {},
                     "_final_info": done.copy()}
        return obs.numpy(), reward.numpy().astype(np.float64), terminated, truncated, infos

    def render(self) -> None:
        """TF-native envs do not render."""
