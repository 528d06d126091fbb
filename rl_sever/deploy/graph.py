"""The graph each format is written from, and the precision it computes in.

The SavedModel holds the agent's own graph, so it returns agent.predict's bits. The portable
formats (ONNX, LiteRT) need float32 throughout: an off-policy agent that multiplies its hidden
layers in bfloat16 (matmul_precision auto with AMX or on Zen 4) is exported with float32 hidden
matmuls, and its check compares against agent.predict computed the same way; LiteRT has no
float64 kernels, so its graph normalises observations in float32.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import keras
import tensorflow as tf

from rl_sever.core.export import ExportedPolicy


def _layers(agent: Any) -> list[Any]:
    """Every Keras layer the agent holds (its networks and their sublayers)."""
    found: dict[int, Any] = {}
    for value in vars(agent).values():
        if isinstance(value, keras.layers.Layer):
            for layer in value._flatten_layers(include_self=True, recursive=True):
                found[id(layer)] = layer
    return list(found.values())


def bfloat16_layers(agent: Any) -> list[Any]:
    """The layers whose hidden matmuls run in bfloat16."""
    return [layer for layer in _layers(agent) if getattr(layer, "hidden_dtype", None) == "bfloat16"]


@contextlib.contextmanager
def float32_matmuls(agent: Any) -> Iterator[bool]:
    """Within: the agent's layers multiply in float32, and its greedy step is traced anew (so
    agent.predict computes as the portable formats do). Yields whether anything changed."""
    layers = bfloat16_layers(agent)
    if not layers:
        yield False
        return
    greedy = agent.greedy_fn
    for layer in layers:
        layer.hidden_dtype = "float32"
    agent.greedy_fn = tf.function(greedy.python_function, autograph=False,
                                  input_signature=greedy.input_signature)
    try:
        yield True
    finally:
        for layer in layers:
            layer.hidden_dtype = "bfloat16"
        agent.greedy_fn = greedy


def policy_module(agent: Any, fmt: str, stochastic: bool = False) -> ExportedPolicy:
    """The tf.Module whose `serve` function is written as `fmt` (LiteRT: float32 statistics)."""
    return ExportedPolicy(agent, float64=fmt != "litert", stochastic=stochastic)
