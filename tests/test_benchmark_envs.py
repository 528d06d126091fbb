"""The standard benchmark suites install with the project (mujoco, box2d, atari extras) and
train end to end at tiny budgets; the returns at published budgets are bench/'s."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import tiny_agent


@pytest.mark.parametrize("algo, env_id", [("sac", "HalfCheetah-v5"), ("td3", "Hopper-v5"),
                                          ("ppo", "LunarLander-v3"), ("a2c", "ALE/Pong-v5")])
def test_benchmark_envs_train_and_evaluate(algo, env_id):
    extra = {} if algo in ("ppo", "a2c") else {"learning_starts": 32}
    agent = tiny_agent(algo, env_id, fill=0, eval_episodes=0, **extra)
    agent.learn(64, progress=False)
    assert agent.has_updated() and int(agent.global_step.numpy()) >= 64
    obs = np.stack([agent.env.single_observation_space.sample() for _ in range(2)])
    assert agent.env.single_action_space.contains(agent.predict(obs)[0])
    agent.close()
