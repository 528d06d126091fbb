"""Per-env episode return / length bookkeeping for Gymnasium vector envs."""

from __future__ import annotations

import collections
import math
from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv, VectorWrapper


class EpisodeStats(VectorWrapper):
    """Tracks the raw return and length of every episode of every sub-env.

    Place it below any reward normalisation so the numbers are the environment's own
    rewards. Works with every autoreset mode; with SAME_STEP (what `make_vec_env` uses)
    the step that ends an episode carries its last reward and the next episode's first
    observation, and is counted once. Under NEXT_STEP the extra reset step is not counted.
    An env without `autoreset_mode` metadata (e.g. a custom vector env) is treated as
    SAME_STEP.

    Finished episodes accumulate until `pop_finished()` is called, so a training loop
    should pop them regularly (e.g. once per iteration for logging).

    With `games` (Atari, envs.atari), the episodes recorded are whole games at their raw
    score, as the sub-envs report them in `info["game"]` below their training-only wrappers
    (a lost life, which ends the learner's episode, is not counted; clipped rewards are not
    summed).
    """

    def __init__(self, env: VectorEnv, window: int = 100, *, games: bool = False) -> None:
        super().__init__(env)
        self.window, self.games = window, games
        self.total_episodes = 0
        self._recent: collections.deque[tuple[float, int]] = collections.deque(maxlen=window)
        self._finished: list[tuple[float, int]] = []
        self._returns = np.zeros(self.num_envs, np.float64)
        self._lengths = np.zeros(self.num_envs, np.int64)
        self._next_step_mode = env.metadata.get("autoreset_mode") == AutoresetMode.NEXT_STEP
        # Under NEXT_STEP, envs whose episode ended last step spend this step resetting.
        self._resetting = np.zeros(self.num_envs, bool)

    def reset(self, *, seed: int | list[int | None] | None = None,
              options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        """Reset the wrapped env; episodes in progress are dropped, not recorded."""
        mask = (options or {}).get("reset_mask")  # before the env: Gymnasium's pops it
        obs, info = self.env.reset(seed=seed, options=options)
        mask = np.ones(self.num_envs, bool) if mask is None else np.asarray(mask, bool)
        self._returns[mask] = 0.0
        self._lengths[mask] = 0
        self._resetting[mask] = False
        return obs, info

    def step(self, actions: Any) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
        """Step the wrapped env and record the episodes that end at this step."""
        obs, rewards, terminated, truncated, info = self.env.step(actions)
        if self.games:
            final_info = info.get("final_info", {})
            if (game := final_info.get("game")) is not None:
                ended = np.flatnonzero(final_info.get("_game"))
                self.record_episodes(np.asarray(game["r"])[ended], np.asarray(game["l"])[ended])
            return obs, rewards, terminated, truncated, info
        live = ~self._resetting
        self._returns[live] += np.asarray(rewards, np.float64)[live]
        self._lengths[live] += 1
        done = (np.asarray(terminated) | np.asarray(truncated)) & live
        self.record_episodes(self._returns[done], self._lengths[done])
        self._returns[done] = 0.0
        self._lengths[done] = 0
        if self._next_step_mode:
            self._resetting = done
        return obs, rewards, terminated, truncated, info

    def record_episodes(self, returns: Any, lengths: Any) -> None:
        """Record finished episodes (also ones that ended outside `step`, e.g. in an in-graph
        rollout: rl_sever.onpolicy.ingraph) from equal-length returns and lengths, in order."""
        for r, n in zip(np.asarray(returns, np.float64), np.asarray(lengths, np.int64), strict=True):
            episode = (float(r), int(n))
            self._finished.append(episode)
            self._recent.append(episode)
            self.total_episodes += 1

    def pop_finished(self) -> list[tuple[float, int]]:
        """(return, length) of the episodes finished since the previous call, in order."""
        finished, self._finished = self._finished, []
        return finished

    def mean_return(self) -> float:
        """Mean return of the last `window` finished episodes (nan before the first)."""
        return float(np.mean([r for r, _ in self._recent])) if self._recent else math.nan

    def mean_length(self) -> float:
        """Mean length of the last `window` finished episodes (nan before the first)."""
        return float(np.mean([n for _, n in self._recent])) if self._recent else math.nan
