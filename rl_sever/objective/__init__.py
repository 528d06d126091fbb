"""Custom losses: compose, replace and register named loss terms (docs/custom_losses.md).

    from rl_sever.objective import LossTerm, loss_term

    @loss_term(trains={"critic"})
    def huber_value(batch, out):
        return tf.reduce_mean(tf.keras.losses.huber(batch["returns"], out["values"]))

    agent = PPO("CartPole-v1", losses=["value=my_pkg.my_losses:huber_value"])
    agent.objective.replace("value", huber_value)     # or in Python, before the first update
    agent.objective.set_weight("entropy", 0.01)       # any time, no retrace
"""

from rl_sever.config.loss_spec import LossSpec, parse_spec
from rl_sever.objective.evaluate import evaluate_term
from rl_sever.objective.outputs import Outputs
from rl_sever.objective.standard import (
    actor_modules,
    critic_modules,
    entropy_bonus,
    policy_gradient,
    ppo_clip,
    value_mse,
)
from rl_sever.objective.term import LossTerm, Objective, apply_spec, load_term, loss_term

__all__ = ["LossSpec", "LossTerm", "Objective", "Outputs", "actor_modules", "apply_spec",
           "critic_modules", "entropy_bonus", "evaluate_term", "load_term", "loss_term",
           "parse_spec", "policy_gradient", "ppo_clip", "value_mse"]
