"""Evaluate a policy for a number of full episodes on fresh, seeded environments."""

from __future__ import annotations

import numpy as np


def evaluate(agent, episodes: int = 10, *, seed: int = 10_000, deterministic: bool = True,
             max_envs: int = 10, render_mode: str | None = None) -> dict[str, float]:
    """Mean/std of the raw episode return and mean length over `episodes` episodes.

    Episodes are spread over up to `max_envs` sub-envs, each running a fixed share, so the
    result does not favour short episodes. Observations are normalised by the agent itself.
    """
    from envs import make_vec_env

    n = max(1, min(episodes, max_envs))
    # Atari: whole games at their raw score (no training-only wrappers).
    env = make_vec_env(agent.env_id, n, seed=seed, render_mode=render_mode,
                       atari=getattr(getattr(agent, "config", None), "atari", None),
                       training=False)
    try:
        targets = np.array([(episodes + i) // n for i in range(n)])
        counts = np.zeros(n, int)
        returns, lengths = [], []
        ep_ret, ep_len = np.zeros(n), np.zeros(n, int)
        obs, _ = env.reset(seed=seed)
        while (counts < targets).any():
            obs, reward, terminated, truncated, _ = env.step(agent.predict(obs, deterministic))
            ep_ret += reward
            ep_len += 1
            for i in np.flatnonzero(np.logical_or(terminated, truncated)):
                if counts[i] < targets[i]:
                    returns.append(float(ep_ret[i]))
                    lengths.append(int(ep_len[i]))
                    counts[i] += 1
                ep_ret[i], ep_len[i] = 0.0, 0
    finally:
        env.close()
    return {"mean_reward": float(np.mean(returns)), "std_reward": float(np.std(returns)),
            "mean_ep_length": float(np.mean(lengths)), "episodes": len(returns)}
