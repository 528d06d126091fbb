"""Taps: read named intermediate activations from the same forward pass as the outputs.

Why not `layer.output`, and how taps show in the audit: docs/isolation.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import keras
import tensorflow as tf

from rl_sever.errors import ConfigError
from rl_sever.isolation.edges import find_operation, replay


class Taps:
    """`taps(inputs, training=False) -> (outputs, {name: activation})`, sharing `model`'s layers."""

    def __init__(self, model: keras.Model, names: Sequence[str]):
        if isinstance(names, str):
            names = [names]
        # Replay this model's own graph: a layer also used in another model has several
        # outputs, and layer.output may belong to the other graph.
        graph, outputs = replay(model)
        activations = {}
        for name in names:
            calls = outputs.get(id(find_operation(graph, name)), [])
            if not calls:
                raise ConfigError(f"'{name}' is a model input; tap the layer it feeds instead")
            if len(calls) > 1:
                raise ConfigError(f"layer '{name}' is called {len(calls)} times in the graph; "
                                  "tap a layer that is called once")
            activations[name] = calls[0]
        self.names = list(names)
        self.model = keras.Model(graph.input, [graph.output, activations],
                                 name=f"{model.name}_taps")

    def __call__(self, inputs: Any, training: bool = False) -> tuple[Any, dict[str, tf.Tensor]]:
        outputs, activations = self.model(inputs, training=training)
        return outputs, activations


def tap_statistics(activations: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """Scalar statistics per tapped activation: mean, std, zero_fraction (dead ReLU units).

    Cheap enough to compute inside the compiled step and return with the other metrics.
    """
    stats = {}
    for name, a in activations.items():
        a = tf.cast(a, tf.float32)
        stats[f"{name}/mean"] = tf.reduce_mean(a)
        stats[f"{name}/std"] = tf.math.reduce_std(a)
        stats[f"{name}/zero_fraction"] = tf.math.zero_fraction(a)
    return stats


def write_tap_summaries(activations: Mapping[str, tf.Tensor], step: int | tf.Tensor, *,
                        writer: tf.summary.SummaryWriter | None = None, prefix: str = "activations",
                        histograms: bool = True) -> None:
    """Write `prefix/<name>` histograms and `prefix/<name>/{mean,std,zero_fraction}` scalars.

    Uses `writer` if given, else the default writer. Meant for plain Python around the compiled
    step (return the activations from it), not for code deep inside a loss.
    """
    if writer is not None:
        with writer.as_default():
            write_tap_summaries(activations, step, prefix=prefix, histograms=histograms)
        return
    step = tf.cast(step, tf.int64)
    for key, value in tap_statistics(activations).items():
        tf.summary.scalar(f"{prefix}/{key}", value, step=step)
    if histograms:
        for name, a in activations.items():
            tf.summary.histogram(f"{prefix}/{name}", a, step=step)
