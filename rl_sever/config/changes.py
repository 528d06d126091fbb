"""Config changes when a run is resumed: which keys may change mid-run and which may not.

Keys that shape the networks, the observations, the stored state or the env layout are fixed
for a run's life (a checkpoint could not be restored into the changed agent, or would mean
something else); the others (the run's length, schedules, coefficients, logging,
checkpointing, guards) may change on resume and are recorded in config.json's `history`.
"""

from __future__ import annotations

import time
from typing import Any

from rl_sever.config.fields import flat_items
from rl_sever.errors import ConfigError

FIXED = ("network.", "n_envs", "normalize_obs", "normalize_reward", "atari.", "buffer_size",
         "n_step", "aux", "auxiliary.", "losses", "seed", "distribute", "devices")
"""Keys (or dotted prefixes) that cannot change when a run is resumed."""


def is_fixed(key: str) -> bool:
    return any(key == p or (p.endswith(".") and key.startswith(p)) for p in FIXED)


def config_changes(old: Any, new: Any) -> dict[str, tuple[Any, Any]]:
    """{key: (old value, new value)} of the flat keys that differ."""
    before = dict(flat_items(old))
    return {k: (before.get(k), v) for k, v in flat_items(new) if before.get(k) != v}


def check_resume_changes(changes: dict[str, tuple[Any, Any]], run_dir) -> dict[str, list]:
    """ConfigError naming every fixed key among `changes`; else the history entry's changes."""
    fixed = [f"{k}: {a!r} -> {b!r}" for k, (a, b) in changes.items() if is_fixed(k)]
    if fixed:
        raise ConfigError(f"{run_dir} cannot be resumed with a different " + "; ".join(fixed)
                          + " (these are fixed for a run's life; start a new run instead)")
    return {k: [a, b] for k, (a, b) in changes.items()}


def history_entry(step: int, changes: dict[str, list]) -> dict[str, Any]:
    return {"step": int(step), "time": time.strftime("%Y-%m-%d %H:%M:%S"), "changes": changes}
