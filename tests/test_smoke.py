"""Tiny-budget runs of every on-policy algorithm on Discrete, Box and MultiDiscrete actions, with
shared-encoder and normalisation variants: they run, log finite metrics under the
Stable-Baselines3 names, evaluate, and predict valid actions."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest

from rl_sever.errors import ConfigError
from tests.helpers import TINY_MD_ID, make_agent

COMMON = ["train/loss", "train/policy_gradient_loss", "train/value_loss", "train/entropy_loss",
          "train/learning_rate", "time/fps", "rollout/ep_rew_mean", "rollout/ep_len_mean"]
PPO_ONLY = ["train/approx_kl", "train/clip_fraction"]

SHARED = {"network.shared_encoder": True}
NORM = {"normalize_obs": True, "normalize_reward": True}
# Pendulum episodes last 200 steps: two 200-step iterations finish some.
PENDULUM = {"n_steps": 100, "total_steps": 400}

CASES = [
    ("ppo", "CartPole-v1", {}),
    ("ppo", "Pendulum-v1", {**PENDULUM, **SHARED, **NORM, "network.encoder_grad_from": "both"}),
    ("ppo", TINY_MD_ID, {**SHARED, "network.encoder_grad_from": "critic"}),
    ("a2c", "CartPole-v1", {**SHARED, **NORM, "network.encoder_grad_from": "actor"}),
    ("a2c", "Pendulum-v1", PENDULUM),
    ("a2c", TINY_MD_ID, {"normalize_obs": True}),
]


def case_id(case):
    algo, env_id, overrides = case
    tags = [k.split(".")[-1] for k, v in overrides.items() if v is True]
    return "-".join([algo, env_id.split("-")[0].replace("RlSever", ""), *tags])


@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_smoke(case, tmp_path):
    algo, env_id, overrides = case
    overrides = dict(overrides)
    if algo == "ppo" and overrides.get("n_steps") == 100:
        overrides["batch_size"] = 50
    agent = make_agent(algo, env_id, overrides, logdir=tmp_path)
    history = []
    try:
        agent.learn(progress=False, callback=lambda agent, metrics: history.append(dict(metrics)))
        cfg = agent.config
        rollout = cfg.n_steps * cfg.n_envs
        assert len(history) == cfg.total_steps // rollout
        assert int(agent.global_step.numpy()) == cfg.total_steps
        last = history[-1]
        expected = COMMON + (PPO_ONLY if algo == "ppo" else [])
        if agent.action.kind == "box":
            expected.append("train/std")
        missing = [k for k in expected if k not in last]
        assert not missing, f"missing metrics {missing}; got {sorted(last)}"
        bad = {k: v for k, v in last.items() if not math.isfinite(v)}
        assert not bad, bad
        assert (agent.normalizer is not None) == bool(cfg.normalize_obs or cfg.normalize_reward)
        # Evaluation at the end of the run, on fresh envs, with raw rewards.
        assert agent.last_eval["episodes"] == cfg.eval_episodes
        assert math.isfinite(agent.last_eval["mean_reward"])
        # Greedy and sampled actions for a batch of raw observations lie in the action space.
        space = gym.make(env_id).observation_space
        space.seed(0)
        obs = np.stack([space.sample() for _ in range(5)])
        action_space = agent.env.single_action_space
        for deterministic in (True, False):
            actions = agent.predict(obs, deterministic=deterministic)
            assert len(actions) == 5
            assert all(action_space.contains(a.astype(action_space.dtype)) for a in actions)
        single = agent.predict(obs[0])
        assert np.shape(single) == action_space.shape
    finally:
        agent.close()
    run_dir = agent.run_dir
    assert (run_dir / "config.json").is_file()
    assert any((run_dir / "checkpoints").iterdir())


def test_agent_accepts_a_user_built_vector_env():
    env = gym.make_vec("CartPole-v1", num_envs=2, vectorization_mode="sync",
                       vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP})
    from agents import PPO
    from tests.helpers import tiny_config

    agent = PPO(env, tiny_config("ppo", total_steps=32), logdir=None)
    history = []
    try:
        agent.learn(progress=False, callback=lambda agent, metrics: history.append(dict(metrics)))
    finally:
        agent.close()
    assert len(history) == 1 and math.isfinite(history[0]["train/loss"])


def test_next_step_autoreset_env_is_rejected():
    # Under NEXT_STEP autoreset the step after an episode end is a reset transition that
    # the on-policy collector would train on; rl_sever works with SAME_STEP only.
    env = gym.make_vec("CartPole-v1", num_envs=2, vectorization_mode="sync")
    from agents import A2C
    from tests.helpers import tiny_config

    try:
        with pytest.raises(ConfigError, match="SAME_STEP"):
            A2C(env, tiny_config("a2c"), logdir=None)
    finally:
        env.close()
