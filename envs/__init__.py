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

__all__ = [
    "EpisodeStats",
    "VecNormalize",
    "episode_stats",
    "find_normalizer",
    "make_env",
    "make_vec_env",
    "preprocess_observation",
]
