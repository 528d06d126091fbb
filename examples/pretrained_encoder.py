"""A pretrained Keras encoder under PPO: frozen for the first steps, fine-tuned after them
(docs/encoders.md).

    python -m examples.pretrained_encoder --steps 60000 --unfreeze-at 20000

1. Pretrain: an autoencoder learns to reconstruct CartPole observations collected with random
   actions; its encoder half (obs -> 16 features) is what PPO receives.
2. Train: `PPO(..., encoder=encoder)` makes it the agent's shared encoder. The config freezes it
   until `--unfreeze-at` env steps (`freeze: {encoder: {until_step: N}}`), then the actor and
   critic losses fine-tune it (`network.encoder_grad_from: both`).
3. The gradient-flow audit shows it as the "encoder" column, and the checkpoint holds its weights.
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import keras
import numpy as np

from agents import PPO


def make_encoder(obs_dim: int, features: int = 16) -> keras.Model:
    """The architecture: a small MLP from the raw observation to `features` values."""
    inputs = keras.Input((obs_dim,))
    x = keras.layers.Dense(64, activation="tanh")(inputs)
    return keras.Model(inputs, keras.layers.Dense(features, activation="tanh")(x), name="pretrained")


def pretrain(encoder: keras.Model, env_id: str = "CartPole-v1", samples: int = 4000,
             epochs: int = 5, seed: int = 0) -> float:
    """Fit encoder + a linear decoder to reconstruct observations of random play; returns the
    final reconstruction loss."""
    env = gym.make(env_id)
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    data = []
    for _ in range(samples):
        data.append(obs)
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            obs, _ = env.reset()
    data = np.asarray(data, np.float32)
    autoencoder = keras.Sequential([encoder, keras.layers.Dense(data.shape[1])])
    autoencoder.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    history = autoencoder.fit(data, data, epochs=epochs, batch_size=64, verbose=0)
    return float(history.history["loss"][-1])


def main(argv: list[str] | None = None) -> PPO:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60_000, help="PPO env steps")
    parser.add_argument("--unfreeze-at", type=int, default=20_000,
                        help="env step from which PPO fine-tunes the encoder")
    parser.add_argument("--logdir", default="runs", help="run folder root ('' for none)")
    parser.add_argument("--pretrain-samples", type=int, default=4000)
    args = parser.parse_args(argv)

    keras.utils.set_random_seed(0)
    encoder = make_encoder(obs_dim=4)
    loss = pretrain(encoder, samples=args.pretrain_samples)
    print(f"pretrained encoder: reconstruction mse {loss:.4f}")

    config = {
        "n_envs": 8, "n_steps": 256, "batch_size": 256, "n_epochs": 10, "gae_lambda": 0.8,
        "gamma": 0.98, "ent_coef": 0.0, "learning_rate": 1e-3, "total_steps": args.steps,
        # frozen while step < unfreeze_at, then trained by both the actor and the critic losses
        "freeze": {"encoder": {"until_step": args.unfreeze_at}},
        "network.encoder_grad_from": "both",
    }
    agent = PPO("CartPole-v1", config, logdir=args.logdir or None, encoder=encoder)
    agent.learn(progress=False)
    result = agent.last_eval if getattr(agent, "last_eval", None) else None
    if result is not None:
        print(f"evaluation: {result['mean_reward']:.1f} +- {result['std_reward']:.1f}")
    if agent.run_dir is not None:
        print(f"run folder: {agent.run_dir}")
    return agent


if __name__ == "__main__":
    main()
