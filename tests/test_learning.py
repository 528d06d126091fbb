"""PPO solves CartPole-v1 with the rl-baselines3-zoo hyperparameters (100k steps)."""

from __future__ import annotations

from agents import PPO, PPOConfig


def test_ppo_solves_cartpole(tmp_path):
    config = PPOConfig(
        n_envs=8, n_steps=32, batch_size=256, n_epochs=20, gamma=0.98, gae_lambda=0.8,
        learning_rate=1e-3, lr_schedule="linear", clip_range=0.2, clip_schedule="linear",
        ent_coef=0.0, total_steps=100_000, eval_episodes=10, seed=0,
    )
    agent = PPO("CartPole-v1", config, logdir=tmp_path)
    try:
        agent.learn(progress=False)
    finally:
        agent.close()
    # Deterministic evaluation on fresh, seeded envs at the end of the run.
    result = agent.last_eval
    assert result["episodes"] == 10
    assert result["mean_reward"] >= 475, result
