"""Edge severing: cut one connection of a Keras functional graph, sharing every layer and weight.

`sever_edge(model, "a", "b")` replays the graph with the same layer objects and puts an `EdgeCut`
on every tensor that flows from "a" directly into "b". Modes and audit: docs/isolation.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from rl_sever.errors import ConfigError, UnknownNameError, suggest
from rl_sever.isolation.sever import sever, sever_if

MODES = ("backward", "both")


def as_functional(model: keras.Model) -> keras.Model:
    """A functional view of a functional or Sequential model (same layers); else ConfigError."""
    if isinstance(model, keras.Sequential):
        try:
            return keras.Model(model.inputs[0], model.outputs[0], name=model.name)
        except (AttributeError, ValueError) as e:
            raise ConfigError(f"Sequential model '{model.name}' has no graph yet; start it with "
                              "keras.Input") from e
    if not hasattr(model, "inputs") or not hasattr(model, "operations"):
        raise ConfigError(f"model '{getattr(model, 'name', model)}' is not a Keras functional "
                          "model; graph surgery needs keras.Model(inputs, outputs) or a "
                          "Sequential with an Input")
    return model


def find_operation(model: keras.Model, name: str) -> Any:
    """The layer (or op) called `name` in `model`'s graph; UnknownNameError otherwise."""
    names = [op.name for op in model.operations]
    for op in model.operations:
        if op.name == name:
            return op
    raise UnknownNameError(f"no layer named '{name}' in model '{model.name}'; layers are {names}."
                           + suggest(name, names))


@keras.saving.register_keras_serializable(package="rl_sever")
class EdgeCut(keras.layers.Layer):
    """Stands on one graph edge: stop-gradient ("backward") or a constant ("both")."""

    def __init__(self, mode: str = "backward", value: Any = 0.0, switchable: bool = False,
                 **kwargs: Any):
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ConfigError(f"unknown edge mode '{mode}'; use one of {list(MODES)}")
        self.mode, self.switchable = mode, switchable
        self.value = np.asarray(value)
        self.active = self.add_weight(name="active", shape=(), dtype="bool", initializer="ones",
                                      trainable=False) if switchable else None

    def build(self, input_shape: tuple) -> None:
        if self.mode == "both" and self.value.ndim and self.value.shape != tuple(input_shape[1:]):
            raise ConfigError(f"{self.name}: constant of shape {self.value.shape} does not match "
                              f"the edge's per-sample shape {tuple(input_shape[1:])}; pass a "
                              "scalar or that shape")

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        if self.mode == "backward":
            return sever(inputs) if self.active is None else sever_if(self.active, inputs)
        # zeros_like has no gradient, so the source is disconnected on this edge.
        constant = tf.zeros_like(inputs) + tf.cast(self.value, inputs.dtype)
        if self.active is None:
            return constant
        return tf.where(tf.convert_to_tensor(self.active), constant, inputs)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "mode": self.mode, "value": self.value.tolist(),
                "switchable": self.switchable}


def replay(
    model: keras.Model, rewrite: Callable[[Any, tuple, dict, Callable], tuple] | None = None
) -> tuple[keras.Model, dict[int, list[Any]]]:
    """Re-run a functional model's graph on fresh inputs, calling the same layer objects.

    `rewrite(op, args, kwargs, producer)` may replace the arguments of any call; `producer(t)`
    gives the layer/op that made tensor `t` in the new graph. Returns the new model and, per
    `id(op)`, the outputs of each of its calls (in order).
    """
    model = as_functional(model)
    made_by: dict[int, tuple[Any, Any]] = {}  # id(tensor) -> (tensor kept alive, op)
    outputs: dict[int, list[Any]] = {}

    def producer(t: Any) -> Any:
        return made_by.get(id(t), (None, None))[1]

    def new_input(x):
        t = keras.Input(batch_shape=x.shape, dtype=x.dtype, name=x.name)
        inputs = [op for op in model.operations if isinstance(op, keras.layers.InputLayer)]
        made_by[id(t)] = (t, next(op for op in inputs if op.output is x))
        return t

    def call(op, *args, **kwargs):
        if rewrite is not None:
            args, kwargs = rewrite(op, args, kwargs, producer)
        out = op(*args, **kwargs)
        outputs.setdefault(id(op), []).append(out)
        for t in keras.tree.flatten(out):
            made_by[id(t)] = (t, op)
        return out

    inputs = keras.tree.map_structure(new_input, model.input)
    new = keras.models.clone_model(model, input_tensors=inputs, clone_function=lambda op: op,
                                   call_function=call)
    return new, outputs


def sever_edge(model: keras.Model, source: str, destination: str, mode: str = "backward", *,
               value: Any = 0.0, switchable: bool = False) -> keras.Model:
    """Return a model sharing `model`'s layers in which the edge source -> destination is cut.

    `value` (mode="both"): a scalar, or an array of the edge's per-sample shape, fed to
    `destination` in place of `source`'s output. Edges inside nested models are not reachable.
    """
    model = as_functional(model)
    src, dst = find_operation(model, source), find_operation(model, destination)
    cut = EdgeCut(mode, value, switchable, name=f"cut_{source}_{destination}")
    consumers: list[str] = []
    n_cut = 0

    def rewrite(op, args, kwargs, producer):
        def swap(t):
            nonlocal n_cut
            if isinstance(t, keras.KerasTensor) and producer(t) is src:
                consumers.append(op.name)
                if op is dst:
                    n_cut += 1
                    return cut(t)
            return t

        return keras.tree.map_structure(swap, (args, kwargs))

    new, _ = replay(model, rewrite)
    if n_cut == 0:
        raise ConfigError(f"'{source}' does not feed '{destination}' directly, so there is no "
                          f"edge to cut; '{source}' feeds {sorted(set(consumers)) or 'nothing'}")
    return new
