"""REINFORCE with a learned baseline (Williams 1992; Sutton & Barto 2018, sec. 13.4), written
as a user's algorithm page outside the packages:

    rl-sever train examples.reinforce:Reinforce CartPole-v1 --steps 100000
    rl-sever eval runs/CartPole-v1__reinforce__0__<time>

or from Python: `Reinforce("CartPole-v1").learn(100_000)`. It gets what the shipped pages
get: the gradient-flow audit of its contract, checkpoints and resume, TensorBoard names,
export, --config YAML files (docs/writing_an_algorithm.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf

from rl_sever import LossTerm, OnPolicyAgent, OnPolicyConfig, actor_modules, sever


@dataclass
class ReinforceConfig(OnPolicyConfig):
    n_steps: int = 512
    """Steps per env per rollout (one gradient step per rollout)."""
    n_envs: int = 4
    """Parallel environments."""
    learning_rate: float = 1e-3
    """Learning rate of the policy and the baseline."""
    gae_lambda: float = 1.0
    """1.0: Monte-Carlo returns G_t (bootstrapped from V only where a rollout cuts an episode)."""
    normalize_advantage: bool = False
    """REINFORCE uses G_t - b(s_t) as it is."""


class Reinforce(OnPolicyAgent):
    """Policy gradient -E[(G_t - b(s_t)) log pi(a_t|s_t)] with the baseline b = V learned by
    the value term (squared error to G_t) and the entropy term of the shared actor-critic."""

    algo = "reinforce"
    config_cls = ReinforceConfig

    def policy_term(self) -> LossTerm:
        def reinforce(batch, out):
            # G_t - b(s_t). sever: the baseline only weights the policy gradient; the policy
            # loss must not move the critic (the audit checks that it has no path there).
            advantage = sever(batch["returns"] - batch["old_values"])
            return -tf.reduce_mean(advantage * out["logp"])

        return LossTerm("policy", reinforce, trains=actor_modules,
                        description="-E[(G - b(s)) * log pi(a|s)]")
