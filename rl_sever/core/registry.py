"""Algorithm registry: names -> agent classes, imported lazily (rl_sever never imports agents
at module level)."""

from __future__ import annotations

import importlib

from rl_sever.errors import UnknownNameError, suggest

ALGORITHMS: dict[str, str] = {
    "ppo": "agents.ppo:PPO",
    "a2c": "agents.a2c:A2C",
    "sac": "agents.sac:SAC",
    "td3": "agents.td3:TD3",
    "ddpg": "agents.td3:DDPG",
}


def algorithm_names() -> list[str]:
    return sorted(ALGORITHMS)


def get_agent_class(name: str):
    key = name.lower()
    if key not in ALGORITHMS:
        raise UnknownNameError(f"unknown algorithm '{name}'; available: {', '.join(algorithm_names())}."
                               + suggest(key, ALGORITHMS))
    module, _, attr = ALGORITHMS[key].partition(":")
    return getattr(importlib.import_module(module), attr)
