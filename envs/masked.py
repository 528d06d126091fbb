"""Action masks: the protocol an env uses to publish them, and a test env that needs them.

Protocol. An action mask is a bool vector, True = the action is allowed now:

* Discrete(n) actions: length n.
* MultiDiscrete(nvec) actions: length sum(nvec), the per-component masks concatenated
  (component k's n_k entries follow component k-1's; MaskablePPO's convention). An action is
  allowed when every component is.

An env publishes the mask of its current observation in `info["action_mask"]` of `reset` and
`step`, or through a method `action_masks()`, or both. Readers take `info["action_mask"]`
first and call `action_masks()` only when the info lacks it: `action_mask_of(env, info)` for
one env, `get_action_masks(env, infos, n_envs, mask_dim)` for a Gymnasium vector env.

Vector envs (Gymnasium 1.x, SAME_STEP autoreset, as `envs.factory.make_vec_env` builds them):
the vector info stacks the sub-envs' masks in `infos["action_mask"]` ([n_envs, mask_dim]), with
presence flags in `infos["_action_mask"]`. The step that ends an episode resets that sub-env at
once: the top-level entries of its info are the reset info, so `infos["action_mask"][i]` is
the mask of the next episode's first observation (the one returned in `obs[i]`); the last
step's own info, and its mask, sit under `infos["final_info"]` (flags
`infos["final_info"]["_action_mask"]`). `env.call("action_masks")` answers for the current
observations too, since it runs after the reset.

Registered ids (the masks change every step; an invalid action ends the episode):

    Masked/InvalidActionPenalty-v0        Discrete(6) (kwarg n_actions)
    Masked/InvalidActionPenaltyMulti-v0   MultiDiscrete([3, 4]) (kwarg nvec), masks of length 7
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.errors import ConfigError

MASK_KEY = "action_mask"
_ALL = np.ones(1, bool)
MASK_METHOD = "action_masks"
MASKED_NAMESPACE = "Masked"
DISCRETE_ID = f"{MASKED_NAMESPACE}/InvalidActionPenalty-v0"
MULTI_ID = f"{MASKED_NAMESPACE}/InvalidActionPenaltyMulti-v0"


class InvalidActionPenaltyEnv(gym.Env):
    """Each step a random subset of the actions is allowed; choosing another ends the episode.

    Actions: Discrete(n_actions), or MultiDiscrete(nvec) when `nvec` is given. Each step every
    action (every component value) is allowed with probability `p_valid`, at least one per
    component, and the mask always differs from the previous step's. One allowed action is the
    target. Observation (float32 Box, values 0/1): the target as one-hot per component, then
    the mask. Reward: `good_reward` for the target, `other_reward` for another allowed action,
    `invalid_reward` and terminated=True for a forbidden one. The registered ids add a
    TimeLimit of 100 steps.
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, n_actions: int = 6, nvec: Sequence[int] | None = None,
                 p_valid: float = 0.5, good_reward: float = 1.0, other_reward: float = 0.1,
                 invalid_reward: float = -100.0, render_mode: str | None = None):
        if render_mode is not None:
            raise ConfigError(f"{type(self).__name__} does not render; got {render_mode!r}")
        if nvec is None:
            self.nvec = np.array([int(n_actions)], np.int64)
            self.action_space = spaces.Discrete(int(n_actions))
        else:
            self.nvec = np.array([int(n) for n in nvec], np.int64)
            self.action_space = spaces.MultiDiscrete(self.nvec)
        if self.nvec.size == 0 or (self.nvec < 2).any():
            raise ConfigError(f"every component needs at least 2 actions, got {self.nvec.tolist()}")
        if not 0.0 < p_valid < 1.0:  # 1 would allow a single mask, which cannot change
            raise ConfigError(f"p_valid must be in (0, 1), got {p_valid}")
        self.p_valid = float(p_valid)
        self.rewards = (float(good_reward), float(other_reward), float(invalid_reward))
        self.mask_dim = int(self.nvec.sum())
        self._starts = np.concatenate([[0], np.cumsum(self.nvec)[:-1]])
        self.observation_space = spaces.Box(0.0, 1.0, (2 * self.mask_dim,), np.float32)
        self._mask = np.zeros(self.mask_dim, bool)
        self._target = np.zeros(self.nvec.size, np.int64)
        self._single = self.nvec.size == 1

    def action_masks(self) -> np.ndarray:
        """The mask of the current observation: bool, shape (sum(nvec),)."""
        return self._mask.copy()

    def _draw(self) -> None:
        """A new mask (never the previous one) and a new target among its allowed actions:
        one uniform draw per action decides whether it is allowed (the smallest of each
        component's always is), another ranks the allowed ones for the target."""
        previous, starts, single = self._mask.tobytes(), self._starts, self._single
        while True:
            u = self.np_random.random((2, self.mask_dim))
            mask = u[0] < self.p_valid
            if single:
                mask[u[0].argmin()] = True
            else:
                mask |= u[0] == np.repeat(np.minimum.reduceat(u[0], starts), self.nvec)
            if mask.tobytes() != previous:
                break
        rank = np.where(mask, u[1], -1.0)
        self._mask = mask
        self._target = (rank.argmax() if single else
                        np.array([rank[s:s + n].argmax() for s, n in zip(starts, self.nvec)]))

    def _observation(self) -> np.ndarray:
        """The target one-hot per component, then the mask (float32)."""
        observation = np.zeros(2 * self.mask_dim, np.float32)
        observation[self._starts + self._target] = 1.0
        observation[self.mask_dim:] = self._mask
        return observation

    def _info(self) -> dict[str, Any]:
        return {MASK_KEY: self._mask.copy()}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._mask = np.zeros(self.mask_dim, bool)
        self._draw()
        return self._observation(), self._info()

    def step(self, action):
        if self._single and isinstance(action, (int, np.integer)):  # Discrete: the common case
            parts = int(action)
            if not 0 <= parts < self.mask_dim:
                raise ValueError(f"action {action!r} is not in {self.action_space}")
            allowed, on_target = bool(self._mask[parts]), parts == self._target
        else:
            parts = np.asarray(action, np.int64).reshape(-1)
            if parts.shape != self.nvec.shape or ((parts < 0) | (parts >= self.nvec)).any():
                raise ValueError(f"action {action!r} is not in {self.action_space}")
            allowed = bool(self._mask[self._starts + parts].all())
            on_target = bool((parts == self._target).all())
        good, other, invalid = self.rewards
        reward = invalid if not allowed else good if on_target else other
        self._draw()
        return self._observation(), reward, not allowed, False, self._info()


def _mask_array(values: Any, rows: int, mask_dim: int, source: str) -> np.ndarray:
    """`values` (one mask per row, possibly an object array of lists) as bool [rows, mask_dim]."""
    array = np.asarray(values)
    if array.dtype == object:
        array = np.stack([np.asarray(v, bool).reshape(-1) for v in values])
    array = np.asarray(array, bool)
    if array.shape != (rows, mask_dim):
        raise ConfigError(f"action masks from {source} have shape {array.shape}, expected "
                          f"({rows}, {mask_dim})")
    return array


def action_mask_of(env: gym.Env, info: dict[str, Any] | None) -> np.ndarray | None:
    """The current mask of a single (possibly wrapped) env: `info["action_mask"]`, else its
    `action_masks()`, else None."""
    if info and MASK_KEY in info:
        return np.asarray(info[MASK_KEY], bool).reshape(-1)
    if env.has_wrapper_attr(MASK_METHOD):
        return np.asarray(env.get_wrapper_attr(MASK_METHOD)(), bool).reshape(-1)
    return None


# Whether a vector env's sub-envs have action_masks(), asked once per vector env.
_HAS_METHOD: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()


def _caller(env: Any) -> Any:
    """The vector env whose `call` reaches the sub-envs: Gymnasium 1.x vector wrappers do not
    forward `call`, their `unwrapped` (the base vector env) has it."""
    return env if hasattr(env, "call") else getattr(env, "unwrapped", env)


def has_mask_method(env: Any) -> bool:
    """Whether the sub-envs of the vector env `env` have `action_masks()` (asked once per
    vector env). Asked through `has_wrapper_attr`, which every Gymnasium env has: calling a missing
    method through AsyncVectorEnv.call would shut the worker down."""
    env = _caller(env)
    try:
        return _HAS_METHOD[env]
    except (KeyError, TypeError):
        pass
    try:
        found = hasattr(env, "call") and all(env.call("has_wrapper_attr", MASK_METHOD))
    except (AttributeError, NotImplementedError, TypeError):  # a vector env that cannot ask
        found = False
    try:
        _HAS_METHOD[env] = found
    except TypeError:  # not weak-referenceable: ask again next time
        pass
    return found


def get_action_masks(env: Any, infos: dict[str, Any] | None, n_envs: int,
                     mask_dim: int) -> np.ndarray | None:
    """Masks of a vector env's current observations, bool [n_envs, mask_dim], or None.

    `infos` is the info of the last `reset` or `step`. Source: `infos["action_mask"]` (rows
    flagged by `infos["_action_mask"]`); rows it lacks, or all rows when it has none, come
    from `env.call("action_masks")` (of `env.unwrapped` for a vector wrapper, which does not
    forward `call`). None when neither source exists; a ConfigError when only some sub-envs
    publish a mask, or a mask has the wrong shape.
    """
    values = infos.get(MASK_KEY) if infos else None
    if (isinstance(values, np.ndarray) and values.dtype == bool
            and values.shape == (n_envs, mask_dim) and infos.get(f"_{MASK_KEY}", _ALL).all()):
        return values  # every sub-env's mask, stacked by the vector env: the common case
    env = _caller(env)
    masks = present = None
    if infos and MASK_KEY in infos:
        present = np.asarray(infos.get(f"_{MASK_KEY}", np.ones(n_envs, bool)), bool)
        if present.shape != (n_envs,):
            raise ConfigError(f"infos['_{MASK_KEY}'] has shape {present.shape}, expected "
                              f"({n_envs},)")
        values = infos[MASK_KEY]
        if present.all():
            return _mask_array(values, n_envs, mask_dim, f"infos['{MASK_KEY}']")
        # Rows of absent masks may hold None (object arrays) or zeros: only the others count.
        masks = np.zeros((n_envs, mask_dim), bool)
        rows = np.flatnonzero(present)
        if rows.size:
            masks[rows] = _mask_array([values[i] for i in rows], rows.size, mask_dim,
                                      f"infos['{MASK_KEY}']")
    if not has_mask_method(env):
        if masks is None:
            return None
        missing = np.flatnonzero(~present).tolist()
        raise ConfigError(f"sub-envs {missing} publish no action mask: neither "
                          f"info['{MASK_KEY}'] nor an {MASK_METHOD}() method")
    called = _mask_array(env.call(MASK_METHOD), n_envs, mask_dim, f"env.call('{MASK_METHOD}')")
    if masks is None:
        return called
    masks[~present] = called[~present]
    return masks


def register_masked_envs() -> None:
    """Register the two masked test envs (idempotent)."""
    for env_id, kwargs in ((DISCRETE_ID, {}), (MULTI_ID, {"nvec": (3, 4)})):
        if env_id not in gym.registry:
            gym.register(env_id, entry_point=InvalidActionPenaltyEnv, kwargs=kwargs,
                         max_episode_steps=100)


register_masked_envs()
