"""Environment factories and vector-env wrappers for rl_sever.

Names are imported on first use (PEP 562), so that `import envs.errors` (which rl_sever.errors
does at start-up) loads neither Gymnasium nor TensorFlow.
"""

from __future__ import annotations

import importlib

_EXPORTS = {"EpisodeStats": "envs.episodes", "PixelObservation": "envs.pixels",
            "VecNormalize": "envs.normalize", "episode_stats": "envs.factory",
            "find_normalizer": "envs.factory", "make_env": "envs.factory",
            "make_vec_env": "envs.factory", "preprocess_observation": "envs.factory"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'envs' has no attribute '{name}'")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
