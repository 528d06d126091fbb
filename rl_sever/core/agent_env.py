"""The vector env an agent steps: made from an env id, or a user's vector env checked."""

from __future__ import annotations

import gymnasium as gym

from envs import EpisodeStats, episode_stats, make_vec_env
from rl_sever.errors import ConfigError


def agent_env(env, config, seed: int) -> tuple[str, gym.vector.VectorEnv]:
    """(env id, vector env) for an agent with `config` whose envs are seeded with `seed`: `env`
    an id (made with make_vec_env) or a Gymnasium vector env (checked, given EpisodeStats)."""
    if isinstance(env, str):
        # Building the env runs no TensorFlow op (the normaliser's variables are made on first
        # use): the agent sets TensorFlow's thread pools after it (rl_sever.core.threads).
        # With runners the learner's envs only describe the spaces: no worker processes.
        vectorization = ("sync" if config.runners and config.vectorization == "async"
                         else config.vectorization)
        return env, make_vec_env(env, config.n_envs, seed=seed, vectorization=vectorization,
                                 n_workers=config.n_workers, normalize_obs=config.normalize_obs,
                                 normalize_reward=config.normalize_reward,
                                 gamma=getattr(config, "gamma", 0.99), atari=config.atari)
    spec = getattr(env, "spec", None)
    env_id = getattr(spec, "id", None) or "custom"
    if env.num_envs != config.n_envs:
        raise ConfigError(f"the env has {env.num_envs} sub-envs but config.n_envs is {config.n_envs}")
    # The collectors assume SAME_STEP autoreset; under NEXT_STEP they would train on the reset
    # transition.
    if env.metadata.get("autoreset_mode") == gym.vector.AutoresetMode.NEXT_STEP:
        raise ConfigError("the vector env uses NEXT_STEP autoreset; build it with "
                          "vector_kwargs={'autoreset_mode': gym.vector.AutoresetMode.SAME_STEP} "
                          "(or use envs.make_vec_env)")
    try:
        episode_stats(env)
    except ValueError:  # the training loop logs episode returns from this wrapper
        env = EpisodeStats(env)
    return env_id, env
