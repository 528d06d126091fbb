"""Inverse dynamics: predict the action a from two consecutive encodings (features(s), features(s')).

Box actions: squared error; Discrete actions: cross-entropy. Module "inverse_head". Trains the
shared encoder only when the agent lets auxiliary losses do so.
"""

from __future__ import annotations

import tensorflow as tf

from rl_sever.auxiliary.base import AuxContext, AuxiliaryModule, action_features, encode_action
from rl_sever.nn.layers import DenseStack


class InverseDynamics(AuxiliaryModule):
    name = "inverse"
    needs_transitions = True

    def __init__(self, feature_dim, obs_shape, obs_dtype, action, cfg):
        super().__init__(feature_dim, obs_shape, obs_dtype, action, cfg)
        self.head = DenseStack(2 * feature_dim, cfg.hidden_sizes, action_features(action), "relu",
                               init="glorot", name="inverse_head")

    def modules(self):
        return {"inverse_head": list(self.head.trainable_variables)}

    def loss(self, ctx: AuxContext):
        pred = self.head(tf.concat([ctx.features, ctx.next_features], axis=-1))
        if self.action.kind == "discrete":
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=tf.cast(ctx.actions, tf.int32), logits=pred))
        else:
            loss = tf.reduce_mean(tf.square(pred - encode_action(self.action, ctx.actions)))
        return loss, {}
