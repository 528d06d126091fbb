"""What `Agent.predict` hands the compiled act step: raw observations (an array, or a Dict
observation's arrays) batched, normalised and typed, then the recurrent state and the action
masks where the agent has them; each checked, with one clear error naming what is wrong."""

from __future__ import annotations

import numpy as np

from rl_sever.core.action_masks import check_masks
from rl_sever.errors import ConfigError


def batch_observations(agent, obs) -> tuple[object, bool, int]:
    """(the batch, whether `obs` was a single observation, batch size)."""
    shape, dtype = agent.obs_shape, agent.obs_dtype
    if isinstance(shape, dict):
        if not isinstance(obs, dict) or set(obs) != set(shape):
            got = sorted(obs) if isinstance(obs, dict) else type(obs).__name__
            raise ConfigError(f"this agent observes a Dict with keys {sorted(shape)}, got {got}")
        obs = {k: np.asarray(obs[k]) for k in shape}
        first = next(iter(shape))
        single = obs[first].shape == shape[first]
        batch = {k: v[None] if single else v for k, v in obs.items()}
        for k, v in batch.items():
            if v.shape[1:] != shape[k] or len(v) != len(batch[first]):
                raise ConfigError(f"observation '{k}' of shape {obs[k].shape} does not match the "
                                  f"env's {shape[k]}")
        batch = {k: v.astype(dtype[k].as_numpy_dtype)
                 for k, v in agent.normalize_obs(batch).items()}
        return batch, single, len(batch[first])
    obs = np.asarray(obs)
    single = obs.shape == shape
    batch = obs[None] if single else obs
    if batch.shape[1:] != shape:
        raise ConfigError(f"observation shape {obs.shape} does not match the env's {shape}")
    return agent.normalize_obs(batch).astype(dtype.as_numpy_dtype), single, len(batch)


def recurrent_state(agent, state, episode_start, n: int) -> np.ndarray:
    """The state the policy acts from: zeros for None, zeroed where an episode starts."""
    dim = agent.layout.state_dim
    state = np.zeros((n, dim), np.float32) if state is None else np.asarray(state, np.float32)
    if state.size != n * dim:
        raise ConfigError(f"recurrent state of shape {state.shape}; this policy needs "
                          f"({n}, {dim}): what predict returned for these observations")
    state = state.reshape(n, dim)
    if episode_start is not None:
        state = np.where(np.asarray(episode_start, bool).reshape(n, 1), 0.0, state)
    return state.astype(np.float32)


def action_masks(agent, masks, n: int) -> np.ndarray:
    """The masks the policy acts with: every action allowed for None."""
    dim = agent.layout.mask_dim
    masks = np.ones((n, dim), bool) if masks is None else np.asarray(masks)
    return check_masks(masks.reshape(n, -1) if masks.size == n * dim else masks, n, dim)


def act_inputs(agent, obs, state, episode_start, masks) -> tuple[list, bool]:
    """The compiled act step's arguments for `predict`, and whether `obs` was one observation."""
    batch, single, n = batch_observations(agent, obs)
    args = [batch]
    if agent.layout.state_dim:
        args.append(recurrent_state(agent, state, episode_start, n))
    if agent.masked:
        args.append(action_masks(agent, masks, n))
    elif masks is not None:
        raise ConfigError("action_masks given, but this agent was trained without masks "
                          "(config action_masks)")
    return args, single
