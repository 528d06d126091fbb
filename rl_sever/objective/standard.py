"""The shipped on-policy terms, each a thin wrapper of a pure function in rl_sever.objective.losses.

Their contracts follow the agent's networks: the policy terms train the actor (and the shared
encoder when network.encoder_grad_from lets the actor train it), the value term the critic
(likewise), the entropy term must reach the actor and may reach what the policy term may.
"""

from __future__ import annotations

import tensorflow as tf

from rl_sever.objective import losses
from rl_sever.objective.term import LossTerm


def _trunk(m) -> set[str]:
    """The shared modules in front of both heads: the encoder and the recurrent core."""
    return ({"encoder"} if m.encoder is not None else set()) | (
        {"recurrent"} if getattr(m, "core", None) is not None else set())


def actor_modules(agent) -> set[str]:
    """The actor, plus the shared encoder and recurrent core when the policy loss trains them."""
    m = agent.model
    return {"actor"} | (_trunk(m) if m.actor_trains_encoder else set())


def critic_modules(agent) -> set[str]:
    """The critic, plus the shared encoder and recurrent core when the value loss trains them."""
    m = agent.model
    return {"critic"} | (_trunk(m) if m.critic_trains_encoder else set())


def ppo_clip(clip_range: tf.Variable | float, weight: float | None = None) -> LossTerm:
    """PPO's clipped surrogate as the term "policy" (metrics approx_kl, clip_fraction)."""
    return LossTerm(
        "policy",
        lambda b, o: losses.ppo_clip_loss(o["logp"], b["logp_old"], b["advantages"], clip_range),
        weight, trains=actor_modules, metric_namespace=None,
        description="PPO clipped surrogate (negated)")


def policy_gradient(weight: float | None = None) -> LossTerm:
    """The vanilla policy-gradient loss -E[A log pi] as the term "policy"."""
    return LossTerm("policy", lambda b, o: losses.policy_gradient_loss(o["logp"], b["advantages"]),
                    weight, trains=actor_modules, description="-E[A * log pi(a|s)]")


def value_mse(clip_range_vf: float | None = None, weight: float | None = None) -> LossTerm:
    """Squared error of V to the returns (pessimistically clipped with `clip_range_vf`)."""
    return LossTerm(
        "value",
        lambda b, o: losses.value_loss(o["values"], b["returns"], b["old_values"], clip_range_vf),
        weight, trains=critic_modules, description="mean squared error to the returns")


def entropy_bonus(weight: float | None = None) -> LossTerm:
    """Negative mean entropy of the policy as the term "entropy"."""
    return LossTerm("entropy", lambda b, o: losses.entropy_loss(o["entropy"]), weight,
                    trains={"actor"}, may=actor_modules, description="-mean entropy")
