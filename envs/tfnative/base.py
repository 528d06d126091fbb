"""The protocol shared by the TF-native environments.

An environment is a small object holding static specs plus pure functions over a
batched state, so the whole rollout can live inside one ``tf.function`` /
``tf.while_loop``::

    state = env.reset(key, n)                                   # EnvState
    obs = env.observe(state)                                    # [n, *obs_shape] float32
    state, obs, reward, terminated, truncated = env.step(state, action)
    state, obs, reward, terminated, truncated, final_obs = env.step_autoreset(state, action)

Nothing here mutates Python attributes, so every method can be traced once and
called in a loop without retracing.
"""

from __future__ import annotations

from typing import ClassVar, NamedTuple

import gymnasium as gym
import numpy as np
import tensorflow as tf

SeedLike = int | tf.Tensor | np.ndarray | tuple[int, int] | list[int]


class EnvState(NamedTuple):
    """Batched state of n environments (a tf.nest structure, usable as while_loop vars)."""

    physics: tf.Tensor
    """[n, physics_dim] in the env's ``physics_dtype``: what Gymnasium keeps in ``env.state``."""
    t: tf.Tensor
    """[n] int32, steps taken in the current episode (drives TimeLimit truncation)."""
    key: tf.Tensor
    """[2] int64 stateless-RNG seed consumed by the next (auto)reset."""


def as_key(seed: SeedLike) -> tf.Tensor:
    """Turn a Python int or a [2] seed into the [2] int64 key the stateless RNG ops take."""
    if isinstance(seed, (int, np.integer)):
        # Split into two 63-bit words so any Python int seed (also negative or > 2**63) maps to a key.
        seed = int(seed) & ((1 << 126) - 1)
        return tf.constant([seed & ((1 << 63) - 1), seed >> 63], dtype=tf.int64)
    return tf.cast(tf.convert_to_tensor(seed), tf.int64)  # a no-op on an int64 key


class TFEnv:
    """Base class: static specs, plus reset/step/step_autoreset built on three physics hooks.

    Subclasses implement ``_init_physics`` and ``_dynamics`` (and ``_observe`` unless the
    observation is the physics cast to float32) and set the class-level specs below to the
    values of the Gymnasium environment they mirror.
    """

    name: ClassVar[str]
    """Gymnasium id of the mirrored environment, e.g. ``"CartPole-v1"``."""
    obs_low: ClassVar[np.ndarray]
    obs_high: ClassVar[np.ndarray]
    n_actions: ClassVar[int | None] = None
    """Number of discrete actions, or None for a Box action space."""
    action_low: ClassVar[np.ndarray | None] = None
    action_high: ClassVar[np.ndarray | None] = None
    physics_dim: ClassVar[int]
    physics_dtype: tf.DType = tf.float64
    """Precision of the physics state: the dtype Gymnasium keeps ``env.state`` in (float64
    except MountainCarContinuous), because rounding differences grow quickly near the unstable
    equilibria of CartPole, Pendulum and Acrobot (float32 drifts past 1e-5 within an episode)."""
    default_max_episode_steps: ClassVar[int]
    reward_threshold: ClassVar[float | None] = None

    obs_dtype: ClassVar[tf.DType] = tf.float32

    def __init__(self, max_episode_steps: int | None = None,
                 physics_dtype: tf.DType | None = None) -> None:
        """``max_episode_steps`` overrides the TimeLimit; ``physics_dtype`` (e.g. tf.float32 for
        speed) overrides the precision of the state, giving up the 1e-5 parity with Gymnasium."""
        self.max_episode_steps = int(self.default_max_episode_steps if max_episode_steps is None
                                     else max_episode_steps)
        if physics_dtype is not None:
            self.physics_dtype = tf.as_dtype(physics_dtype)

    @property
    def is_discrete(self) -> bool:
        return self.n_actions is not None

    @property
    def obs_shape(self) -> tuple[int, ...]:
        return tuple(self.obs_low.shape)

    @property
    def action_shape(self) -> tuple[int, ...]:
        """Shape of ONE env's action: () for discrete, (1,) etc. for Box."""
        return () if self.is_discrete else tuple(self.action_low.shape)

    @property
    def action_dtype(self) -> tf.DType:
        # int64 matches gymnasium.spaces.Discrete's dtype; the step accepts any integer type.
        return tf.int64 if self.is_discrete else tf.float32

    def observation_space(self) -> gym.spaces.Box:
        """Gymnasium space of one env's observation (equal to Gymnasium's own)."""
        return gym.spaces.Box(self.obs_low, self.obs_high, dtype=np.float32)

    def action_space(self) -> gym.spaces.Space:
        """Gymnasium space of one env's action (equal to Gymnasium's own)."""
        if self.is_discrete:
            return gym.spaces.Discrete(self.n_actions)
        return gym.spaces.Box(self.action_low, self.action_high, dtype=np.float32)

    def state_spec(self, n: int | None = None) -> EnvState:
        """TensorSpecs of an EnvState for n envs (for tf.function input signatures)."""
        return EnvState(physics=tf.TensorSpec([n, self.physics_dim], self.physics_dtype),
                        t=tf.TensorSpec([n], tf.int32), key=tf.TensorSpec([2], tf.int64))

    def action_spec(self, n: int | None = None) -> tf.TensorSpec:
        """TensorSpec of a batch of n actions."""
        return tf.TensorSpec([n, *self.action_shape], self.action_dtype)

    def reset(self, key: SeedLike, n: int | tf.Tensor) -> EnvState:
        """Fresh episodes for n envs, drawn from Gymnasium's reset distribution."""
        key = as_key(key)
        sample_key, next_key = tf.unstack(tf.random.experimental.stateless_split(key, 2))
        physics = self._init_physics(sample_key, n)
        return EnvState(physics=physics, t=tf.zeros([n], tf.int32), key=next_key)

    def from_physics(self, physics: tf.Tensor | np.ndarray, t: tf.Tensor | np.ndarray | None = None,
                     key: SeedLike = 0) -> EnvState:
        """Build a state from given physics, e.g. copied from Gymnasium's ``unwrapped.state``."""
        physics = tf.convert_to_tensor(np.asarray(physics), dtype=self.physics_dtype)
        physics = tf.reshape(physics, [-1, self.physics_dim])
        if t is None:
            t = tf.zeros(tf.shape(physics)[:1], tf.int32)
        return EnvState(physics, tf.cast(t, tf.int32), as_key(key))

    def observe(self, state: EnvState) -> tf.Tensor:
        """[n, *obs_shape] float32 observation of the current state."""
        return self._observe(state.physics)

    def step(self, state: EnvState,
             action: tf.Tensor) -> tuple[EnvState, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
        """One step of all n envs: (state, obs, reward, terminated, truncated).

        reward is float32 [n]; terminated/truncated are bool [n], truncated meaning the
        TimeLimit of Gymnasium's registration was reached (both may be true together,
        as in Gymnasium). Stepping an env that already ended is undefined, as in Gymnasium.
        """
        action = tf.convert_to_tensor(action)
        physics, reward, terminated = self._dynamics(state.physics, action)
        t = state.t + 1
        truncated = t >= self.max_episode_steps
        obs = self._observe(physics)
        return EnvState(physics, t, state.key), obs, reward, terminated, truncated

    def step_autoreset(
        self, state: EnvState, action: tf.Tensor
    ) -> tuple[EnvState, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
        """``step`` with Gymnasium's SAME_STEP autoreset.

        Returns (state, obs, reward, terminated, truncated, final_obs): for envs that ended,
        ``state``/``obs`` already belong to the next episode and ``final_obs`` is the true
        last observation (bootstrap truncated episodes from it); elsewhere final_obs == obs.
        """
        state, final_obs, reward, terminated, truncated = self.step(state, action)
        done = tf.logical_or(terminated, truncated)
        n = done.shape[0] if done.shape[0] is not None else tf.shape(done)[0]
        # A fresh batch is drawn every step (cheaper than a tf.cond, and XLA-friendly);
        # only the rows of finished envs are used.
        fresh = self.reset(state.key, n)
        physics = tf.where(done[:, None], fresh.physics, state.physics)
        t = tf.where(done, tf.zeros_like(state.t), state.t)
        obs = tf.where(done[:, None], self._observe(fresh.physics), final_obs)
        return EnvState(physics, t, fresh.key), obs, reward, terminated, truncated, final_obs

    def _init_physics(self, key: tf.Tensor, n: int | tf.Tensor) -> tf.Tensor:
        """[n, physics_dim] initial physics drawn with the stateless seed ``key``."""
        raise NotImplementedError

    def _dynamics(self, physics: tf.Tensor,
                  action: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """(next physics, float32 reward [n], bool terminated [n])."""
        raise NotImplementedError

    def _observe(self, physics: tf.Tensor) -> tf.Tensor:
        """[n, *obs_shape] float32 observation of the physics (by default, the physics itself)."""
        return tf.cast(physics, tf.float32)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name}, max_episode_steps={self.max_episode_steps})"


def uniform(key: tf.Tensor, n: int | tf.Tensor, dim: int, low: float, high: float,
            dtype: tf.DType) -> tf.Tensor:
    """[n, dim] uniform in [low, high), like ``np_random.uniform(low, high, size)``."""
    return tf.random.stateless_uniform([n, dim], key, minval=low, maxval=high, dtype=dtype)
