"""sever / sever_if: block the backward pass, keep the forward value.

In audit terms: `sever` disconnects (gradient None, "—"); `sever_if` keeps the connection and
makes the gradient an exact zero while its predicate is true ("0"), so that flipping the
predicate never changes the graph.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf


def _stop(t: Any) -> Any:
    if t is None:
        return None
    if isinstance(t, keras.KerasTensor):  # tf ops reject symbolic Keras tensors
        return keras.ops.stop_gradient(t)
    return tf.stop_gradient(t)


def sever(x: Any) -> Any:
    """Stop gradient through `x` (a tensor or nested structure; None leaves pass through).

    The forward value is unchanged. Also accepts symbolic Keras tensors, so it can be used
    while building a functional model.
    """
    return tf.nest.map_structure(_stop, x)


def sever_if(pred: bool | tf.Tensor | tf.Variable, x: Any) -> Any:
    """Sever `x` when the scalar `pred` (a bool tf.Variable or tensor) is true.

    Arithmetic select, not tf.cond: both cases share one graph, so flipping a `pred` variable
    never retraces, and the gradient is exactly zero (not None) while severed.
    """
    if isinstance(pred, keras.KerasTensor) or any(isinstance(t, keras.KerasTensor)
                                                  for t in tf.nest.flatten(x)):
        raise TypeError("sever_if needs concrete tensors; inside a functional model use "
                        "rl_sever.isolation.sever_edge(..., switchable=True) or a Gate")
    pred = tf.convert_to_tensor(pred, dtype=tf.bool)
    if pred.shape.rank not in (None, 0):
        raise ValueError(f"sever_if: pred must be a scalar bool, got shape {pred.shape}")

    def one(t):
        if t is None:
            return None
        t = tf.convert_to_tensor(t)
        return tf.where(pred, tf.stop_gradient(t), t)

    return tf.nest.map_structure(one, x)
