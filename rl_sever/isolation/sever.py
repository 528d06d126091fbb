"""sever / sever_if: block the backward pass, keep the forward value."""

from __future__ import annotations

import tensorflow as tf


def sever(x):
    """Stop gradient through `x` (any nested structure); the forward value is unchanged."""
    return tf.nest.map_structure(tf.stop_gradient, x)


def sever_if(pred, x):
    """Sever `x` when `pred` (a bool tf.Variable or tensor) is true; no retrace when it flips.

    Implemented arithmetically, not with tf.cond, so both branches share one graph:
    y = where(pred, stop_gradient(x), x) gives exactly zero gradient when severed.
    """
    pred = tf.convert_to_tensor(pred, dtype=tf.bool)

    def one(t):
        t = tf.convert_to_tensor(t)
        return tf.where(pred, tf.stop_gradient(t), t)

    return tf.nest.map_structure(one, x)
