"""Forward outputs a loss term reads: a lazy, read-only mapping (computed on first use).

On-policy agents (PPO, A2C) provide, for the minibatch `batch`:
    dist      the policy's action distribution (rl_sever.nn.distributions)
    logp      log pi(batch["actions"] | obs)                        [B]
    entropy   the policy's entropy per sample                          [B]
    values    the critic's value estimates V(obs)                      [B]
    features  the shared encoder's features of obs, live (not severed) [B, F]
              (only with network.shared_encoder; sever them to keep a term off the encoder)
and `batch` holds obs, actions, advantages, returns, logp_old, old_values (plus rewards and
next_obs, one-step, when a term sets needs_transitions). `out.agent` is the agent itself (its
config, model, clip_range, ...).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from rl_sever.errors import ConfigError


class Outputs(Mapping):
    """Name -> value, each computed once by its thunk the first time a term reads it."""

    def __init__(self, agent: Any, thunks: Mapping[str, Callable[[], Any]]):
        self.agent = agent
        self._thunks = dict(thunks)
        self._cache: dict[str, Any] = {}

    def __getitem__(self, key: str) -> Any:
        if key not in self._thunks:
            raise ConfigError(f"forward output '{key}' is not available from "
                              f"{type(self.agent).__name__} with this config (available: "
                              f"{', '.join(self._thunks)})")
        if key not in self._cache:
            self._cache[key] = self._thunks[key]()
        return self._cache[key]

    def __contains__(self, key: object) -> bool:
        return key in self._thunks

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if key in self._thunks else default

    def __iter__(self) -> Iterator[str]:
        return iter(self._thunks)

    def __len__(self) -> int:
        return len(self._thunks)
