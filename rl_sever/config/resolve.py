"""Resolving a run's config: preset < --config FILE < --set key=value < explicit CLI flags."""

from __future__ import annotations

import argparse
from typing import Any

import yaml

from rl_sever.config import presets
from rl_sever.config.fields import load_yaml, parse_set

# YAML's spellings of null, plus Python's; not "none", a valid value of some string keys.
_NONE_WORDS = ("null", "~", "None")


def override_layers(args: argparse.Namespace) -> list[dict[str, Any]]:
    """--config FILE < --set key=value < explicit flags (--seed, --n-envs, --steps)."""
    layers = []
    if getattr(args, "config", None):
        layers.append(load_yaml(args.config))
    pairs = parse_set(getattr(args, "set", None) or [])
    layers.append({k: (None if v in _NONE_WORDS else v) for k, v in pairs.items()})
    if getattr(args, "loss", None):  # --loss edits come after the config's own `losses`
        earlier = next((layer["losses"] for layer in reversed(layers) if "losses" in layer), [])
        if isinstance(earlier, str):  # --set losses=[...]
            earlier = yaml.safe_load(earlier) if earlier.strip().startswith("[") else [earlier]
        layers.append({"losses": [*(earlier or []), *args.loss]})
    flags = {"seed": getattr(args, "seed", None), "n_envs": getattr(args, "n_envs", None),
             "total_steps": getattr(args, "steps", None)}
    layers.append({k: v for k, v in flags.items() if v is not None})
    return layers


def resolve_config(klass: type, env_id: str | None, args: argparse.Namespace) -> tuple[Any, bool]:
    """The resolved config of agent class `klass`, and whether a preset was applied."""
    preset = (_find_preset(klass.algo, env_id)
              if env_id and not getattr(args, "no_preset", False) else None)
    layers = ([preset] if preset else []) + override_layers(args)
    return presets.resolve(klass.config_cls, layers), preset is not None


def _find_preset(algo: str, env_id: str) -> dict[str, Any] | None:
    """The preset of (algo, env_id). A TF-native id (tf:<id>) uses the Gymnasium id's preset
    minus observation/reward normalisation, which in-graph training does not do."""
    preset = presets.find(algo, env_id.removeprefix("tf:"))
    if preset is None or not env_id.startswith("tf:"):
        return preset
    return {k: v for k, v in preset.items() if k not in ("normalize_obs", "normalize_reward")}
