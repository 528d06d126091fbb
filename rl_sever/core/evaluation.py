"""Evaluate a policy for a number of full episodes on fresh, seeded environments (and record
them as videos)."""

from __future__ import annotations

import contextlib
import dataclasses
import re
from pathlib import Path

import numpy as np

from envs import make_vec_env
from envs.replay import record_videos
from rl_sever.core.action_masks import MaskReader


def evaluate(agent, episodes: int = 10, *, seed: int = 10_000, deterministic: bool = True,
             max_envs: int = 10, render_mode: str | None = None,
             video_dir: str | Path | None = None) -> dict:
    """Mean/std of the raw episode return and mean length over `episodes` episodes.

    Episodes are spread over up to `max_envs` sub-envs, each running a fixed share, so the
    result does not favour short episodes. Observations are normalised by the agent itself.
    With `video_dir`, the episodes run one after another in one env, and are then recorded
    there as MP4 files by replaying their actions (`envs.replay`; the `video` extra):
    `"videos"` lists the files.
    """
    atari = getattr(getattr(agent, "config", None), "atari", None)
    if video_dir is not None:
        max_envs, render_mode = 1, None
    n = max(1, min(episodes, max_envs))
    # Atari: whole games at their raw score (no training-only wrappers).
    env = make_vec_env(agent.env_id, n, seed=seed, render_mode=render_mode, atari=atari,
                       training=False)
    taken: list[list[np.ndarray]] = [[]]
    # Greedy acting on a host copy of the policy that reads the weights once, where it has one.
    greedy_on_host = deterministic and hasattr(agent, "weights_held")
    held = agent.weights_held() if greedy_on_host else contextlib.nullcontext()
    with held, contextlib.closing(env):
        targets = np.array([(episodes + i) // n for i in range(n)])
        counts = np.zeros(n, int)
        returns, lengths, successes = [], [], []
        ep_ret, ep_len = np.zeros(n), np.zeros(n, int)
        # An agent trained with action masks acts on the eval env's masks too.
        masks = MaskReader(env, n, agent.layout.mask_dim) if getattr(agent, "masked", False) else None
        recurrent = bool(getattr(getattr(agent, "layout", None), "state_dim", 0))
        state, starts = None, np.ones(n, bool)  # a recurrent policy's memory, per sub-env
        obs, info = env.reset(seed=seed)
        while (counts < targets).any():
            kwargs = {} if masks is None else {"action_masks": masks(info)}
            if recurrent:
                action, state = agent.predict(obs, state, starts, deterministic, **kwargs)
            else:
                action = agent.predict(obs, deterministic=deterministic, **kwargs)
            obs, reward, terminated, truncated, info = env.step(action)
            starts = np.logical_or(terminated, truncated)
            if video_dir is not None:  # one env: its actions, replayed for the videos
                taken[-1].append(np.asarray(action)[0])
            ep_ret += reward
            ep_len += 1
            for i in np.flatnonzero(np.logical_or(terminated, truncated)):
                if counts[i] < targets[i]:
                    returns.append(float(ep_ret[i]))
                    lengths.append(int(ep_len[i]))
                    counts[i] += 1
                    success = _success(info, i)
                    if success is not None:
                        successes.append(success)
                ep_ret[i], ep_len[i] = 0.0, 0
                taken.append([])
    result = {"mean_reward": float(np.mean(returns)), "std_reward": float(np.std(returns)),
              "mean_ep_length": float(np.mean(lengths)), "episodes": len(returns)}
    if successes:  # goal envs report info["is_success"] at an episode's end
        result["success_rate"] = float(np.mean(successes))
    if video_dir is not None:
        result.update(_record(agent, seed, [np.stack(a) for a in taken[:episodes]], returns,
                              video_dir, atari))
    return result


def _record(agent, seed: int, actions: list[np.ndarray], returns: list[float], video_dir,
            atari) -> dict:
    prefix = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{agent.algo}-{agent.env_id}")
    settings = dataclasses.asdict(atari) if dataclasses.is_dataclass(atari) else None
    out = record_videos(agent.env_id, seed, actions, video_dir, prefix=prefix, atari=settings)
    # The replay must reproduce each episode: an env that is not deterministic given the seed
    # and the actions would film other episodes than the ones evaluated.
    out["replay_matches"] = bool(np.allclose(out["returns"], returns, rtol=1e-5, atol=1e-6))
    return out


def _success(info: dict, i: int) -> bool | None:
    """info["is_success"] of sub-env `i`'s episode that just ended (its final info under
    SAME_STEP autoreset), or None when the env does not report it."""
    final = info.get("final_info", {})
    if "is_success" not in final or not np.asarray(final.get("_is_success", [True] * (i + 1)))[i]:
        return None
    return bool(np.asarray(final["is_success"])[i])
