"""Three custom loss terms, each usable from the CLI, a YAML config or Python
(docs/custom_losses.md):

    # 1. Huber value loss instead of the squared error (keeps vf_coef as its weight)
    rl-sever train ppo CartPole-v1 --loss value=examples.custom_losses:huber_value
    # 2. KL-penalty PPO (adaptive beta) instead of the clipped surrogate
    rl-sever train ppo CartPole-v1 --loss policy=examples.custom_losses:kl_penalty
    # 3. reward prediction on the shared encoder: trains only the encoder and its own head
    rl-sever train ppo CartPole-v1 --set network.shared_encoder=true \\
        --loss +examples.custom_losses:reward_prediction@0.1
"""

from __future__ import annotations

import keras
import tensorflow as tf

from rl_sever.auxiliary.base import action_features, encode_action
from rl_sever.errors import ConfigError
from rl_sever.isolation import sever
from rl_sever.objective import LossTerm, actor_modules, critic_modules, loss_term


# -- 1. Huber value loss -------------------------------------------------------------------------
@loss_term(trains=critic_modules)
def huber_value(batch, out, delta: float = 1.0):
    """Huber loss of V to the returns: quadratic within `delta`, linear beyond (robust to
    outlier returns)."""
    # sever: the returns are regression targets.
    err = tf.abs(out["values"] - sever(batch["returns"]))
    quadratic = tf.minimum(err, delta)
    return tf.reduce_mean(0.5 * tf.square(quadratic) + delta * (err - quadratic))


# -- 2. KL-penalty PPO with adaptive beta (Schulman et al. 2017, section 4) --------------------
class KLPenalty(LossTerm):
    """L = -E[r A] + beta * KL(pi_old || pi), r = pi / pi_old. After each update, beta is halved
    when the measured KL fell below target_kl / 1.5 and doubled above target_kl * 1.5: a
    tf.Variable assigned in Python between updates, so the compiled step never retraces."""

    def __init__(self, target_kl: float = 0.01, beta: float = 1.0):
        super().__init__("kl_penalty", trains=actor_modules, metric_namespace=None)
        self.target_kl, self.initial_beta = target_kl, beta

    def build(self, agent):
        self.beta = tf.Variable(self.initial_beta, trainable=False, name="kl_beta")  # per agent
        return {}

    def state(self):
        return {"beta": self.beta}  # checkpointed, so a resumed run keeps adapting from here

    def compute(self, batch, out):
        # sever: old log-probs belong to the behaviour policy, advantages to the critic.
        log_ratio = out["logp"] - sever(batch["logp_old"])
        ratio = tf.exp(log_ratio)
        surrogate = -tf.reduce_mean(ratio * sever(batch["advantages"]))
        kl = tf.reduce_mean((ratio - 1.0) - log_ratio)  # k3 estimator of KL(old || new), >= 0
        # approx_kl keeps PPO's train/approx_kl curve (and its target_kl early stop) working.
        return surrogate + self.beta * kl, {"approx_kl": sever(kl), "kl_beta": tf.identity(self.beta)}

    def on_update(self, agent, stats):
        kl = stats["approx_kl"]
        if kl < self.target_kl / 1.5:
            self.beta.assign(max(float(self.beta.numpy()) / 2.0, 1e-4))
        elif kl > self.target_kl * 1.5:
            self.beta.assign(min(float(self.beta.numpy()) * 2.0, 1e4))


kl_penalty = KLPenalty()


# -- 3. Reward prediction on the shared encoder --------------------------------------------------
class RewardPrediction(LossTerm):
    """Predict the one-step reward from the shared encoder's features and the action. Trains the
    encoder (the point: shape its features) and its own head, never the actor or the critic."""

    def __init__(self, hidden: int = 64):
        super().__init__("reward_prediction", trains={"encoder", "reward_prediction_head"},
                         needs_transitions=True)
        self.hidden = hidden

    def build(self, agent):
        if agent.model.encoder is None:
            raise ConfigError("reward_prediction reads the shared encoder: set "
                              "network.shared_encoder=true")
        self.action = agent.action
        width = agent.config.network.hidden_sizes[-1] + action_features(agent.action)
        self.head = keras.Sequential([keras.layers.Dense(self.hidden, activation="relu"),
                                      keras.layers.Dense(1)], name="reward_prediction_head")
        self.head.build((None, width))
        return {"reward_prediction_head": list(self.head.trainable_variables)}

    def compute(self, batch, out):
        # features are live: this term is meant to train the encoder (its contract says so).
        x = tf.concat([out["features"], encode_action(self.action, batch["actions"])], -1)
        pred = tf.squeeze(self.head(x), -1)
        return tf.reduce_mean(tf.square(pred - batch["rewards"]))


reward_prediction = RewardPrediction()
