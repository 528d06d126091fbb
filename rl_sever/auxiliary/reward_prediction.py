"""Reward prediction: a head on (features(s), a) regresses the one-step reward r.

Module "reward_head". Trains the shared encoder only when the agent lets auxiliary losses do so.
"""

from __future__ import annotations

import tensorflow as tf

from rl_sever.auxiliary.base import AuxContext, AuxiliaryModule, action_features, encode_action
from rl_sever.nn.layers import DenseStack


class RewardPrediction(AuxiliaryModule):
    name = "reward"
    needs_transitions = True

    def __init__(self, feature_dim, obs_shape, obs_dtype, action, cfg):
        super().__init__(feature_dim, obs_shape, obs_dtype, action, cfg)
        in_dim = feature_dim + action_features(action)
        self.head = DenseStack(in_dim, cfg.hidden_sizes, 1, "relu", init="glorot", name="reward_head")

    def modules(self):
        return {"reward_head": list(self.head.trainable_variables)}

    def loss(self, ctx: AuxContext):
        x = tf.concat([ctx.features, encode_action(self.action, ctx.actions)], axis=-1)
        pred = tf.squeeze(self.head(x), -1)
        return tf.reduce_mean(tf.square(pred - tf.cast(ctx.rewards, tf.float32))), {}
