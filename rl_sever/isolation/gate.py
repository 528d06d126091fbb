"""Gate: switch a layer out of the network at run time (forward and backward).

The switch is a bool variable read by tf.cond (no retrace, checkpointed). Audit and the
Adam-momentum caveat: docs/isolation.md.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from rl_sever.errors import ConfigError


def _compatible(a: tuple, b: tuple) -> bool:
    return len(a) == len(b) and all(x is None or y is None or x == y for x, y in zip(a, b))


@keras.saving.register_keras_serializable(package="rl_sever")
class Gate(keras.layers.Layer):
    """Routes through `layer` while `is_open`, else through `alternative` (identity if None).

    `is_open` may be a bool (the gate owns its flag) or an existing bool variable, to switch
    several gates together. The alternative must produce the layer's output shape.
    """

    def __init__(self, layer: keras.layers.Layer, alternative: keras.layers.Layer | None = None, *,
                 is_open: bool | tf.Variable | keras.Variable = True, **kwargs: Any):
        super().__init__(**kwargs)
        self.layer = layer
        self.alternative = alternative
        if isinstance(is_open, (tf.Variable, keras.Variable)):
            if is_open.dtype != "bool" or tuple(is_open.shape) != ():
                raise ConfigError("Gate: is_open must be a scalar bool variable")
            self.is_open = is_open
        else:
            self.is_open = self.add_weight(name="is_open", shape=(), dtype="bool",
                                           initializer="ones" if is_open else "zeros",
                                           trainable=False)

    def open(self) -> None:
        """Route through the wrapped layer (works inside tf.function)."""
        self.is_open.assign(True)

    def close(self) -> None:
        """Route through the alternative (works inside tf.function)."""
        self.is_open.assign(False)

    def build(self, input_shape: tuple) -> None:
        # Sub-layers must own their variables before tf.cond traces them: a variable created
        # inside a cond branch would break the compiled step.
        for sub in (self.layer, self.alternative):
            if sub is not None and not sub.built:
                sub.build(input_shape)
        spec = keras.KerasTensor(input_shape, dtype=self.compute_dtype)
        through = self.layer.compute_output_spec(spec)
        around = spec if self.alternative is None else self.alternative.compute_output_spec(spec)
        if not _compatible(tuple(through.shape), tuple(around.shape)):
            alt = "identity" if self.alternative is None else self.alternative.name
            raise ConfigError(f"Gate '{self.name}': layer '{self.layer.name}' maps "
                              f"{tuple(input_shape)} -> {tuple(through.shape)} but the alternative "
                              f"({alt}) gives {tuple(around.shape)}; pass an alternative with the "
                              "layer's output shape")

    def call(self, inputs: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        def around():
            if self.alternative is None:
                return tf.identity(inputs)
            return self.alternative(inputs, training=training)

        return tf.cond(tf.convert_to_tensor(self.is_open),
                       lambda: self.layer(inputs, training=training), around)

    def compute_output_spec(self, inputs: Any, training: bool | None = None) -> Any:
        return self.layer.compute_output_spec(inputs)

    def get_config(self) -> dict:
        # serialize_keras_object / deserialize_keras_object map None (no alternative) to None.
        return {**super().get_config(), "layer": keras.saving.serialize_keras_object(self.layer),
                "alternative": keras.saving.serialize_keras_object(self.alternative),
                "is_open": bool(keras.ops.convert_to_numpy(self.is_open))}

    @classmethod
    def from_config(cls, config: dict) -> Gate:
        load = keras.saving.deserialize_keras_object
        return cls(**{**config, "layer": load(config["layer"]),
                      "alternative": load(config.get("alternative"))})
