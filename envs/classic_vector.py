"""CartPole and Acrobot stepped for all sub-envs at once, bit for bit Gymnasium's envs.

`gym.make_vec(..., vectorization_mode="sync")` steps each sub-env in Python: for 16 Acrobots
that is 16 Runge-Kutta integrations of scalar NumPy arithmetic per vector step. The classes
here hold the sub-envs' states as one array and apply Gymnasium's formulas to it, operation
for operation in Gymnasium's order (elementwise float64 arithmetic and NumPy's sin/cos give
the same bits on an array as on a scalar), so each sub-env follows the trajectory its
Gymnasium env would: the same seeds and random streams (one Generator per sub-env, seeded as
`Env.reset(seed=...)` seeds it), the same time limit, SAME_STEP autoreset with the same
`final_obs` / `final_info` infos, the same float32 observations.
tests/test_classic_vector.py compares them with Gymnasium's SyncVectorEnv step by step.

`make_vec_env` uses them for the registered `CartPole-v0/v1` and `Acrobot-v1` when nothing
asks for Gymnasium's own objects (sync vectorization, no env kwargs, no render mode, the
registered time limit and entry point); anything else builds Gymnasium's vector env.
"""

from __future__ import annotations

import copy
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.envs.classic_control import utils
from gymnasium.envs.classic_control.acrobot import AcrobotEnv
from gymnasium.envs.classic_control.cartpole import CartPoleEnv
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

ENTRY_POINTS = {"gymnasium.envs.classic_control.cartpole:CartPoleEnv": "cartpole",
                "gymnasium.envs.classic_control.acrobot:AcrobotEnv": "acrobot"}


def batched_classic(env_id: str, n_envs: int, kwargs: dict[str, Any]) -> VectorEnv | None:
    """The batched vector env standing in for `gym.make_vec(env_id, n_envs)`, or None where
    Gymnasium's own env objects are needed (kwargs, another registration, wrappers)."""
    if kwargs:
        return None
    try:
        spec = gym.spec(env_id)
    except gym.error.Error:
        return None
    kind = ENTRY_POINTS.get(spec.entry_point) if isinstance(spec.entry_point, str) else None
    if (kind is None or spec.kwargs or spec.max_episode_steps is None
            or spec.additional_wrappers or not spec.order_enforce):
        return None
    if kind == "acrobot" and (AcrobotEnv.torque_noise_max != 0.0
                              or AcrobotEnv.book_or_nips != "book"):
        return None
    if kind == "cartpole" and CartPoleEnv().kinematics_integrator != "euler":
        return None
    cls = BatchedCartPole if kind == "cartpole" else BatchedAcrobot
    env = cls(n_envs, spec.max_episode_steps)
    # As gym.make_vec records it: the id the agent, its evaluations and runners rebuild from.
    env.spec = copy.deepcopy(spec)
    env.spec.kwargs = {**({"num_envs": n_envs} if n_envs != 1 else {}),
                       "vectorization_mode": "sync",
                       "vector_kwargs": {"autoreset_mode": AutoresetMode.SAME_STEP}}
    return env


class _Batched(VectorEnv):
    """Sub-env bookkeeping shared by the batched envs: seeding, time limit, autoreset, infos."""

    base: type[gym.Env]

    def __init__(self, num_envs: int, max_episode_steps: int) -> None:
        super().__init__()
        single = self._single = self.base()  # spaces, metadata and the physical constants
        self.num_envs = int(num_envs)
        self.max_episode_steps = int(max_episode_steps)
        self.metadata = dict(single.metadata, autoreset_mode=AutoresetMode.SAME_STEP)
        self.render_mode = None
        self.single_observation_space = single.observation_space
        self.single_action_space = single.action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._rngs: list[np.random.Generator | None] = [None] * self.num_envs
        self._elapsed = np.zeros(self.num_envs, np.int64)
        self._obs: np.ndarray | None = None
        self.state = np.zeros((self.num_envs, 4), np.float64)  # both envs: 4 state variables

    # -- the env's own part ---------------------------------------------------------------
    def _reset_rows(self, rows: np.ndarray, options: dict | None) -> None:
        raise NotImplementedError

    def _dynamics(self, actions: np.ndarray):
        """Step every sub-env: (observations, rewards, terminated)."""
        raise NotImplementedError

    def _reset_obs(self, rows: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    # -- the vector env -------------------------------------------------------------------
    def reset(self, *, seed: int | list[int | None] | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        if seed is None:
            seed = [None] * self.num_envs
        elif isinstance(seed, (int, np.integer)):
            seed = [int(seed) + i for i in range(self.num_envs)]
        if len(seed) != self.num_envs:
            raise ValueError(f"If seeds are passed as a list the length must match "
                             f"num_envs={self.num_envs} but got length={len(seed)}.")
        options = dict(options or {})
        mask = options.pop("reset_mask", None)
        if mask is None:
            mask = np.ones(self.num_envs, bool)
        elif not (isinstance(mask, np.ndarray) and mask.dtype == np.bool_
                  and mask.shape == (self.num_envs,) and mask.any()):
            raise ValueError(f"options['reset_mask'] must be a boolean array of shape "
                             f"({self.num_envs},) with a True value, got {mask!r}")
        for i in np.flatnonzero(mask):
            if seed[i] is not None or self._rngs[i] is None:
                self._rngs[i], _ = seeding.np_random(seed[i])
        rows = np.flatnonzero(mask)
        self._reset_rows(rows, options or None)
        self._elapsed[rows] = 0
        obs = (np.array(self._obs) if self._obs is not None
               else np.zeros(self.observation_space.shape, np.float32))
        obs[rows] = self._reset_obs(rows)
        self._obs = obs
        return obs.copy(), {}

    def step(self, actions) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        if self._obs is None:
            raise gym.error.ResetNeeded("Cannot call env.step() before calling env.reset()")
        actions = np.asarray(actions)
        n = self.single_action_space.n
        if actions.shape != (self.num_envs,) or not np.issubdtype(actions.dtype, np.integer) \
                or actions.min() < 0 or actions.max() >= n:
            raise ValueError(f"actions must be {self.num_envs} integers in [0, {n}), "
                              f"got {actions!r}")
        obs, rewards, terminated = self._dynamics(actions)
        self._elapsed += 1
        truncated = self._elapsed >= self.max_episode_steps
        done = terminated | truncated
        infos: dict[str, Any] = {}
        if done.any():
            rows = np.flatnonzero(done)
            final_obs = np.full(self.num_envs, None, dtype=object)
            for i in rows:
                final_obs[i] = obs[i].copy()
            infos = {"final_obs": final_obs, "_final_obs": done.copy(),
                     "final_info": {}, "_final_info": done.copy()}
            self._reset_rows(rows, None)
            self._elapsed[rows] = 0
            obs[rows] = self._reset_obs(rows)
        self._obs = obs
        return obs.copy(), rewards, terminated, truncated, infos

    def close_extras(self, **kwargs: Any) -> None:
        self._obs = None


class BatchedCartPole(_Batched):
    """CartPole (gymnasium.envs.classic_control.cartpole, semi-implicit Euler off: "euler")."""

    base = CartPoleEnv

    def _reset_rows(self, rows, options):
        low, high = utils.maybe_parse_reset_bounds(options, -0.05, 0.05)
        for i in rows:
            self.state[i] = self._rngs[i].uniform(low=low, high=high, size=(4,))

    def _reset_obs(self, rows):
        return self.state[rows].astype(np.float32)

    def _dynamics(self, actions):
        c = self._single
        x, x_dot, theta, theta_dot = self.state.T
        force = np.where(actions == 1, c.force_mag, -c.force_mag)
        costheta = np.cos(theta)
        sintheta = np.sin(theta)
        temp = (force + c.polemass_length * np.square(theta_dot) * sintheta) / c.total_mass
        thetaacc = (c.gravity * sintheta - costheta * temp) / (
            c.length * (4.0 / 3.0 - c.masspole * np.square(costheta) / c.total_mass))
        xacc = temp - c.polemass_length * thetaacc * costheta / c.total_mass
        x = x + c.tau * x_dot
        x_dot = x_dot + c.tau * xacc
        theta = theta + c.tau * theta_dot
        theta_dot = theta_dot + c.tau * thetaacc
        self.state = np.stack((x, x_dot, theta, theta_dot), axis=1)
        terminated = ((x < -c.x_threshold) | (x > c.x_threshold)
                      | (theta < -c.theta_threshold_radians) | (theta > c.theta_threshold_radians))
        # Autoreset follows every termination, so each step is before or at the pole's fall.
        rewards = np.ones(self.num_envs, np.float64)
        return self.state.astype(np.float32), rewards, terminated


class BatchedAcrobot(_Batched):
    """Acrobot ("book" dynamics, rk4 over one dt, as gymnasium.envs.classic_control.acrobot)."""

    base = AcrobotEnv

    def __init__(self, num_envs: int, max_episode_steps: int) -> None:
        super().__init__(num_envs, max_episode_steps)
        self.torques = np.asarray(AcrobotEnv.AVAIL_TORQUE, np.float64)

    def _reset_rows(self, rows, options):
        low, high = utils.maybe_parse_reset_bounds(options, -0.1, 0.1)
        for i in rows:  # float32 states after a reset, as Gymnasium's
            self.state[i] = self._rngs[i].uniform(low=low, high=high, size=(4,)).astype(np.float32)

    def _reset_obs(self, rows):
        # Gymnasium's first observation comes from its float32 state: float32 sin and cos.
        s = self.state[rows].astype(np.float32).T
        return np.stack([np.cos(s[0]), np.sin(s[0]), np.cos(s[1]), np.sin(s[1]), s[2], s[3]],
                        axis=1).astype(np.float32)

    def _dynamics(self, actions):
        a = AcrobotEnv
        y0 = np.concatenate([self.state, self.torques[actions][:, None]], axis=1)
        dt = a.dt  # rk4 over t = [0, dt], as Gymnasium's (dt - 0 is dt)
        dt2 = dt / 2.0
        k1 = _dsdt(y0)
        k2 = _dsdt(y0 + dt2 * k1)
        k3 = _dsdt(y0 + dt2 * k2)
        k4 = _dsdt(y0 + dt * k3)
        ns = (y0 + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4))[:, :4]
        ns[:, 0] = _wrap(ns[:, 0], -np.pi, np.pi)
        ns[:, 1] = _wrap(ns[:, 1], -np.pi, np.pi)
        ns[:, 2] = np.minimum(np.maximum(ns[:, 2], -a.MAX_VEL_1), a.MAX_VEL_1)
        ns[:, 3] = np.minimum(np.maximum(ns[:, 3], -a.MAX_VEL_2), a.MAX_VEL_2)
        self.state = ns
        s = ns.T
        terminated = -np.cos(s[0]) - np.cos(s[1] + s[0]) > 1.0
        rewards = np.where(terminated, 0.0, -1.0)
        obs = np.stack([np.cos(s[0]), np.sin(s[0]), np.cos(s[1]), np.sin(s[1]), s[2], s[3]],
                       axis=1).astype(np.float32)
        return obs, rewards, terminated


def _wrap(x: np.ndarray, m: float, M: float) -> np.ndarray:
    diff = M - m
    while (above := x > M).any():
        x[above] = x[above] - diff
    while (below := x < m).any():
        x[below] = x[below] + diff
    return x


def _pow2(x: np.ndarray) -> np.ndarray:
    """`x**2` as Gymnasium computes it on one float64: the C library's pow(x, 2.0), which
    differs from `x * x` (what NumPy's `**2` on an array is) in the last bit now and then."""
    return np.array([v**2 for v in x.tolist()])


def _dsdt(s_augmented: np.ndarray) -> np.ndarray:
    """AcrobotEnv._dsdt on rows [theta1, theta2, dtheta1, dtheta2, torque]."""
    a_ = AcrobotEnv
    m1, m2, l1 = a_.LINK_MASS_1, a_.LINK_MASS_2, a_.LINK_LENGTH_1
    lc1, lc2, I1, I2 = a_.LINK_COM_POS_1, a_.LINK_COM_POS_2, a_.LINK_MOI, a_.LINK_MOI
    g = 9.8
    pi = np.pi
    cos, sin = np.cos, np.sin
    theta1, theta2, dtheta1, dtheta2, a = s_augmented.T
    d1 = m1 * lc1**2 + m2 * (l1**2 + lc2**2 + 2 * l1 * lc2 * cos(theta2)) + I1 + I2
    d2 = m2 * (lc2**2 + l1 * lc2 * cos(theta2)) + I2
    phi2 = m2 * lc2 * g * cos(theta1 + theta2 - pi / 2.0)
    phi1 = (
        -m2 * l1 * lc2 * _pow2(dtheta2) * sin(theta2)
        - 2 * m2 * l1 * lc2 * dtheta2 * dtheta1 * sin(theta2)
        + (m1 * lc1 + m2 * l1) * g * cos(theta1 - pi / 2)
        + phi2
    )
    ddtheta2 = (
        a + d2 / d1 * phi1 - m2 * l1 * lc2 * _pow2(dtheta1) * sin(theta2) - phi2
    ) / (m2 * lc2**2 + I2 - _pow2(d2) / d1)
    ddtheta1 = -(d2 * ddtheta2 + phi1) / d1
    return np.stack([dtheta1, dtheta2, ddtheta1, ddtheta2, np.zeros_like(a)], axis=1)
