"""PPO trained fully in-graph on tf:CartPole-v1 with the foundation's case-1 hyperparameters
(rl-baselines3-zoo, 100k steps) solves Gymnasium's own CartPole-v1, like the Gymnasium path
(tests/test_learning.py)."""

from __future__ import annotations

from types import SimpleNamespace

from agents import PPO, PPOConfig
from rl_sever.core.evaluation import evaluate


def test_ppo_in_graph_on_tf_cartpole_solves_gymnasium_cartpole():
    config = PPOConfig(
        n_envs=8,
        n_steps=32,
        batch_size=256,
        n_epochs=20,
        gamma=0.98,
        gae_lambda=0.8,
        learning_rate=1e-3,
        lr_schedule="linear",
        clip_range=0.2,
        clip_schedule="linear",
        ent_coef=0.0,
        total_steps=100_000,
        eval_episodes=0,
        seed=0,
    )
    agent = PPO("tf:CartPole-v1", config, logdir=None)
    try:
        agent.learn(progress=False)
        assert agent.ingraph.iteration_fn.experimental_get_tracing_count() == 1
        # Deterministic evaluation on fresh, seeded Gymnasium envs (not the TF-native ones).
        result = evaluate(SimpleNamespace(env_id="CartPole-v1", predict=agent.predict), 10)
    finally:
        agent.close()
    assert result["episodes"] == 10
    assert result["mean_reward"] >= 475, result
