"""Observation and reward normalisation for Gymnasium vector envs (SB3 VecNormalize semantics)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from gymnasium import spaces
from gymnasium.vector import VectorEnv, VectorWrapper
from gymnasium.vector.utils import batch_space

from envs.errors import UnsupportedSpaceError
from envs.pixels import is_image_space
from envs.running_stats import RunningMeanStd, mirror_of

if TYPE_CHECKING:  # TensorFlow only for checkpoints: env runners normalise without it
    import tensorflow as tf


class VecNormalize(VectorWrapper):
    """Normalises observations with running statistics and scales rewards.

    Observations: `(obs - mean) / sqrt(var + eps)` clipped to `clip_obs`, statistics updated
    on every observation returned while `training` is True (reset observations included,
    final observations excluded). The entries of `info["final_obs"]` are normalised with
    the current statistics so that bootstrapping from them sees the same inputs as the
    policy.

    Rewards: divided by the running standard deviation of the discounted return
    `returns = returns * gamma + reward` (not centred, so the sign of a reward is kept),
    clipped to `clip_reward`; `returns` restarts where an episode ends.

    Set `training = False` for evaluation: statistics are frozen, outputs still normalised.
    For checkpoints, add `trackable()` to a `tf.train.Checkpoint`, call `before_save()`
    before `save()` and `after_restore()` after `restore()`.
    """

    def __init__(self, env: VectorEnv, *, normalize_obs: bool = True, normalize_reward: bool = True,
                 gamma: float = 0.99, clip_obs: float = 10.0, clip_reward: float = 10.0,
                 epsilon: float = 1e-8) -> None:
        super().__init__(env)
        self.training = True
        self.gamma = float(gamma)
        self.clip_obs = float(clip_obs)
        self.clip_reward = float(clip_reward)
        self.epsilon = float(epsilon)
        # One RunningMeanStd; for a Dict observation (envs.dict_obs) one per vector key.
        self.obs_rms: RunningMeanStd | dict[str, RunningMeanStd] | None = None
        self.ret_rms: RunningMeanStd | None = None
        self.returns = np.zeros(self.num_envs, np.float64)
        self._state = None  # the checkpoint node of the statistics (`trackable`)

        if normalize_obs and isinstance(env.single_observation_space, spaces.Dict):
            self._normalize_dict(env.single_observation_space)
        elif normalize_obs:
            space = env.single_observation_space
            if not isinstance(space, spaces.Box) or is_image_space(space):
                raise UnsupportedSpaceError(f"normalize_obs needs a flat Box observation space, "
                                            f"got {space}; image observations are scaled inside "
                                            "the network instead")
            self.obs_rms = RunningMeanStd(space.shape, name="obs_rms", lazy_mirror=True)
            # Normalised values live in [-clip_obs, clip_obs]; say so to the agent.
            self.single_observation_space = spaces.Box(-self.clip_obs, self.clip_obs, space.shape,
                                                       np.float32)
            self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        if normalize_reward:
            self.ret_rms = RunningMeanStd((), name="ret_rms", lazy_mirror=True)

    def _normalize_dict(self, space: spaces.Dict) -> None:
        """Statistics per vector key of a Dict observation; image keys stay as they are."""
        keys = [k for k, s in space.spaces.items()
                if isinstance(s, spaces.Box) and len(s.shape) == 1 and not is_image_space(s)]
        if not keys:
            raise UnsupportedSpaceError(f"normalize_obs: the Dict observation {space} has no "
                                        "vector key to normalise")
        self.obs_rms = {k: RunningMeanStd(space[k].shape, name=f"obs_rms_{k}",
                                           lazy_mirror=True) for k in keys}
        self.single_observation_space = spaces.Dict(
            {k: spaces.Box(-self.clip_obs, self.clip_obs, s.shape, np.float32) if k in keys else s
             for k, s in space.spaces.items()})
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)

    def _update_obs(self, obs, mask=None) -> None:
        if isinstance(self.obs_rms, dict):
            for k, rms in self.obs_rms.items():
                rms.update(np.asarray(obs[k]) if mask is None else np.asarray(obs[k])[mask])
        else:
            self.obs_rms.update(np.asarray(obs) if mask is None else np.asarray(obs)[mask])

    def reset(self, *, seed: int | list[int | None] | None = None,
              options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        """Reset the wrapped env and the discounted returns; normalise the first obs."""
        mask = (options or {}).get("reset_mask")  # before the env: Gymnasium's pops it
        obs, info = self.env.reset(seed=seed, options=options)
        mask = np.ones(self.num_envs, bool) if mask is None else np.asarray(mask, bool)
        self.returns[mask] = 0.0
        if self.obs_rms is not None:
            if self.training:
                self._update_obs(obs, mask)
            obs = self.normalize_obs(obs)
        return obs, info

    def step(self, actions: Any) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
        """Step the wrapped env, update the statistics if training and normalise."""
        obs, rewards, terminated, truncated, info = self.env.step(actions)
        rewards = np.asarray(rewards)
        if self.obs_rms is not None:
            if self.training:
                self._update_obs(obs)
            obs = self.normalize_obs(obs)
            if "final_obs" in info:
                mask = info.get("_final_obs", np.ones(self.num_envs, bool))
                info = {**info, "final_obs": self._normalize_final_obs(info["final_obs"], mask)}
        if self.ret_rms is not None:
            if self.training:
                self.returns = self.returns * self.gamma + rewards
                self.ret_rms.update(self.returns)
            rewards = self.normalize_reward(rewards)
        self.returns[np.asarray(terminated) | np.asarray(truncated)] = 0.0
        return obs, rewards, terminated, truncated, info

    def normalize_obs(self, obs: np.ndarray) -> np.ndarray:
        """Normalise observations with the current statistics (identity if obs norm is off)."""
        if self.obs_rms is None:
            return obs
        if isinstance(self.obs_rms, dict):  # each vector key of a Dict observation
            return {k: (self.obs_rms[k].normalize(v, self.clip_obs, self.epsilon)
                        if k in self.obs_rms else v) for k, v in obs.items()}
        return self.obs_rms.normalize(obs, self.clip_obs, self.epsilon)

    def normalize_reward(self, rewards: np.ndarray) -> np.ndarray:
        """Scale rewards by the running return std (identity if reward norm is off)."""
        if self.ret_rms is None:
            return rewards
        rewards = np.asarray(rewards)
        dtype = rewards.dtype if np.issubdtype(rewards.dtype, np.floating) else np.float64
        scaled = rewards / np.sqrt(self.ret_rms.var + self.epsilon)
        return np.clip(scaled, -self.clip_reward, self.clip_reward).astype(dtype)

    def trackable(self) -> tf.Module:
        """The tf.Module holding `obs_rms` / `ret_rms` (those in use), for `tf.train.Checkpoint`."""
        if self._state is None:
            import tensorflow as tf

            state = tf.Module(name="vec_normalize")
            if self.obs_rms is not None:
                state.obs_rms = mirror_of(self.obs_rms)
            if self.ret_rms is not None:
                state.ret_rms = self.ret_rms.trackable()
            self._state = state
        return self._state

    def before_save(self) -> None:
        """Copy the NumPy statistics into their tf.Variables; call before saving/exporting."""
        for rms in self._all_stats():
            rms.sync_to_variables()

    def after_restore(self) -> None:
        """Copy restored tf.Variables back into the NumPy statistics; call after restore."""
        for rms in self._all_stats():
            rms.sync_from_variables()

    def _all_stats(self) -> list[RunningMeanStd]:
        obs = list(self.obs_rms.values()) if isinstance(self.obs_rms, dict) else [self.obs_rms]
        return [rms for rms in (*obs, self.ret_rms) if rms is not None]

    def _normalize_final_obs(self, final_obs: Any, mask: np.ndarray) -> np.ndarray:
        if not isinstance(final_obs, dict):
            final_obs = np.asarray(final_obs)
        if isinstance(final_obs, dict) or final_obs.dtype != object:  # a dense batch (tf: envs)
            return self.normalize_obs(final_obs)
        # Gymnasium stores final observations as an object array with None where no
        # episode ended; build a new one so the wrapped env's buffers are never touched.
        out = np.full(len(final_obs), None, dtype=object)
        for i in np.flatnonzero(mask):
            out[i] = self.normalize_obs(final_obs[i])
        return out
