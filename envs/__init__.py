"""Environment factories and vector-env wrappers for rl_sever."""

from envs.episode_stats import EpisodeStats
from envs.factory import (
    episode_stats,
    find_normalizer,
    make_env,
    make_vec_env,
    preprocess_observation,
)
from envs.normalize import VecNormalize
from envs.pixels import PixelObservation  # also registers the "Pixels/<EnvId>" ids

__all__ = [
    "EpisodeStats",
    "PixelObservation",
    "VecNormalize",
    "episode_stats",
    "find_normalizer",
    "make_env",
    "make_vec_env",
    "preprocess_observation",
]
