"""Tuned hyperparameter presets shipped with rl_sever, and config layering.

A preset is a YAML mapping of config keys in rl_sever/config/presets/<algo>/<EnvId>.yaml, holding
published tuned values (mostly rl-baselines3-zoo's) converted to rl_sever's config keys. The
CLI applies the preset of (algo, env id) automatically, under --config and --set: `resolve`
stacks such layers on the config defaults.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from importlib import resources
from importlib.abc import Traversable
from typing import Any

from envs import atari
from rl_sever.config.fields import load_yaml, update

_SUFFIX = ".yaml"


def _root() -> Traversable:
    return resources.files("rl_sever.config") / "presets"


def _file_name(env_id: str) -> str:
    # Namespaced ids ("ALE/Pong-v5") cannot be file names as they are.
    return env_id.replace("/", "__") + _SUFFIX


ATARI = "Atari"  # the preset file serving every Atari game (envs.atari)
# Presets of envs another package registers (not installed by default): env id -> package.
EXTERNAL = {"FetchReach-v4": "gymnasium-robotics"}


def find(algo: str, env_id: str) -> dict[str, Any] | None:
    """The preset config values for `algo` on `env_id` (an Atari game: the algorithm's Atari
    preset), or None if rl_sever ships none."""
    path = _root() / algo.lower() / _file_name(env_id)
    if not path.is_file() and env_id != ATARI and atari.is_atari(env_id):
        path = _root() / algo.lower() / _file_name(ATARI)
    return load_yaml(path, "preset", "config keys", encoding="utf-8") if path.is_file() else None


def available() -> list[tuple[str, str]]:
    """Every shipped preset as (algo, env id), sorted."""
    root = _root()
    algo_dirs = [d for d in root.iterdir() if d.is_dir()] if root.is_dir() else []
    return sorted((d.name, f.name[: -len(_SUFFIX)].replace("__", "/"))
                  for d in algo_dirs for f in d.iterdir() if f.name.endswith(_SUFFIX))


def flatten_layer(cfg: Any, values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted keys for nested config sections, so layers merge key by key."""
    out: dict[str, Any] = {}
    for raw, value in values.items():
        key = str(raw).replace("-", "_")
        section = getattr(cfg, key, None) if "." not in key else None
        if isinstance(value, Mapping) and dataclasses.is_dataclass(section):
            out.update(flatten_layer(section, value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def resolve(config_cls: type, layers: Sequence[Mapping[str, Any]]) -> Any:
    """`config_cls()` with the layers applied in order (later ones win), validated once at
    the end: a combination may pass through invalid states (e.g. a preset's batch size
    before a later layer changes n_steps to match)."""
    base = config_cls()
    merged: dict[str, Any] = {}
    for layer in layers:
        merged.update(flatten_layer(base, layer))
    return update(base, merged)
