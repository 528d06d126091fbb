"""Action masks: whether a run uses them (config `action_masks`) and reading them from the env.

An env gives the valid actions of its current observation as a bool vector, True = allowed,
one entry per choice (Discrete(n): n; MultiDiscrete(nvec): sum(nvec), the components' masks
concatenated), either as `info["action_mask"]` from reset and step or from an
`action_masks()` method (docs/spaces.md; the info key wins where both exist). With masks, the
policy gives forbidden actions probability zero when acting, in the loss and the entropy, in
evaluation and in the exported policy, and the rollout stores the masks with the batch.

`action_masks: auto` uses them when the env has an `action_masks()` method (found without
resetting it); an env that gives them only in its info needs `action_masks: on`.
"""

from __future__ import annotations

import numpy as np

from envs.masked import get_action_masks, has_mask_method
from rl_sever.errors import ConfigError, EnvError

MODES = ("auto", "on", "off")


def uses_action_masks(env, action, mode: str, *, tf_native: bool = False) -> bool:
    """Whether a run on `env` (actions `action`, an ActionSpec) reads masks, under `mode`."""
    if mode == "off":
        return False
    if mode == "on" and action.kind == "box":
        raise ConfigError("action_masks=on needs Discrete or MultiDiscrete actions; this env's "
                          "actions are a Box")
    if mode == "on" and tf_native:
        raise ConfigError("action_masks=on: TF-native (tf:) envs give no action masks")
    if action.kind == "box" or tf_native:
        return False
    return mode == "on" or has_mask_method(env)


class MaskReader:
    """The current masks of a vector env ([n_envs, mask_dim] bool), checked."""

    def __init__(self, env, n_envs: int, mask_dim: int):
        self.env, self.n_envs, self.mask_dim = env, int(n_envs), int(mask_dim)

    def __call__(self, info: dict) -> np.ndarray:
        masks = get_action_masks(self.env, info, self.n_envs, self.mask_dim)
        if masks is None:
            raise EnvError("action masks are on but the env gives none: no info['action_mask'] "
                           "and no action_masks() method (docs/spaces.md)")
        return check_masks(masks, self.n_envs, self.mask_dim)


def check_masks(masks, n: int, mask_dim: int) -> np.ndarray:
    """`masks` as a [n, mask_dim] bool array; an EnvError names a wrong shape or a row that
    allows no action."""
    masks = np.asarray(masks)
    if masks.shape != (n, mask_dim):
        raise EnvError(f"action mask of shape {masks.shape}; this env needs ({n}, {mask_dim}): "
                       f"one bool per action choice for each of {n} observations")
    masks = masks.astype(bool, copy=False)
    allowed = masks.any(axis=1)
    if not allowed.all():
        empty = np.flatnonzero(~allowed)
        raise EnvError(f"the action mask of sub-env {int(empty[0])} allows no action")
    return masks
