"""Masks: weight masks (pruning), activation masks (ablation), gradient masks (selective updates).

All masks are bool variables: flipping entries never retraces, and they are saved with their
owner in a tf.train.Checkpoint. Masked positions are selected with tf.where, never multiplied
by zero, so an inf/NaN elsewhere cannot leak into a masked gradient.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from rl_sever.errors import ConfigError


def _select(mask: Any, x: Any) -> tf.Tensor:
    x = tf.convert_to_tensor(x)
    return tf.where(tf.convert_to_tensor(mask), x, tf.zeros([], x.dtype))


def _as_mask(mask: Any, shape: Sequence[int], what: str) -> tf.Tensor:
    mask = tf.convert_to_tensor(mask)
    if mask.dtype != tf.bool:
        mask = tf.not_equal(mask, tf.zeros([], mask.dtype))
    if tuple(mask.shape) != tuple(shape):
        raise ConfigError(f"{what}: mask shape {tuple(mask.shape)} != expected {tuple(shape)}")
    return mask


class _KeepMasked(keras.constraints.Constraint):
    """Re-zeroes masked kernel entries after every Keras optimizer step.

    Masked entries get exactly zero gradient, but Adam/RMSprop momentum accumulated before a
    mask was set would still move them; Keras applies a variable's constraint after each update.
    """

    def __init__(self, mask: keras.Variable, inner: Any = None):
        self.mask, self.inner = mask, inner

    def __call__(self, w: Any) -> tf.Tensor:
        if self.inner is not None:
            w = self.inner(w)
        return _select(self.mask, w)


class _WeightMasked:
    """Mixin for Keras layers that store `_kernel` and read it through the `kernel` property
    (Dense and the conv layers do since Keras 3.0, for LoRA)."""

    def build(self, input_shape: Any) -> None:
        super().build(input_shape)
        if self.quantization_mode:
            raise ConfigError(f"{type(self).__name__} does not support quantized kernels")
        self.weight_mask = self.add_weight(name="weight_mask", shape=self._kernel.shape,
                                           dtype="bool", initializer="ones", trainable=False)
        self._kernel.constraint = _KeepMasked(self.weight_mask, self._kernel.constraint)

    @property
    def kernel(self) -> tf.Tensor:
        kernel = super().kernel
        mask = getattr(self, "weight_mask", None)
        return kernel if mask is None else _select(mask, kernel)

    def set_mask(self, mask: Any) -> None:
        """Set the kernel mask (True = keep) and zero the stored masked entries now."""
        self.weight_mask.assign(_as_mask(mask, self._kernel.shape, self.name))
        self._kernel.assign(_select(self.weight_mask, self._kernel))

    def prune(self, sparsity: float) -> None:
        """Mask the smallest-magnitude kernel entries so that `sparsity` of them are masked.

        Already-masked entries count as smallest, so repeated calls only ever add to the mask.
        """
        if not 0.0 <= sparsity <= 1.0:
            raise ConfigError(f"sparsity must be in [0, 1], got {sparsity}")
        size = int(np.prod(self._kernel.shape))
        n_pruned = round(sparsity * size)
        kept = tf.reshape(self.weight_mask, [-1])
        magnitude = tf.where(kept, tf.abs(tf.reshape(self._kernel, [-1])), -1.0)
        smallest = tf.argsort(magnitude, stable=True)[:n_pruned]
        mask = tf.tensor_scatter_nd_update(tf.ones([size], tf.bool), smallest[:, None],
                                           tf.zeros([n_pruned], tf.bool))
        self.set_mask(tf.reshape(mask, self._kernel.shape))

    @property
    def sparsity(self) -> float:
        """Fraction of kernel entries currently masked (eager)."""
        return 1.0 - float(np.mean(keras.ops.convert_to_numpy(self.weight_mask)))


@keras.saving.register_keras_serializable(package="rl_sever")
class MaskedDense(_WeightMasked, keras.layers.Dense):
    """Dense with a prunable kernel: `weight_mask` (True = keep), `set_mask`, `prune`."""


@keras.saving.register_keras_serializable(package="rl_sever")
class MaskedConv2D(_WeightMasked, keras.layers.Conv2D):
    """Conv2D with a prunable kernel: `weight_mask` (True = keep), `set_mask`, `prune`."""


@keras.saving.register_keras_serializable(package="rl_sever")
class ActivationMask(keras.layers.Layer):
    """Zeroes chosen units (Dense outputs) or channels along `axis`; `unit_mask` True = keep.

    Masked units output exactly 0 and pass exactly zero gradient upstream.
    """

    def __init__(self, axis: int = -1, **kwargs: Any):
        super().__init__(**kwargs)
        self.axis = axis
        self.supports_masking = True

    def build(self, input_shape: tuple) -> None:
        units = input_shape[self.axis]
        if units is None:
            raise ConfigError(f"ActivationMask '{self.name}': axis {self.axis} has unknown size")
        self.unit_mask = self.add_weight(name="unit_mask", shape=(units,), dtype="bool",
                                         initializer="ones", trainable=False)

    def set_mask(self, mask: Any) -> None:
        """Set which units/channels are kept (True = keep)."""
        self.unit_mask.assign(_as_mask(mask, self.unit_mask.shape, self.name))

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        shape = [1] * len(inputs.shape)
        shape[self.axis] = -1
        return _select(tf.reshape(self.unit_mask, shape), inputs)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "axis": self.axis}


class _VariableIndex:
    """Position of each variable by identity, without keeping it alive or checkpointing it
    (a plain object, so tf.Module does not track it)."""

    def __init__(self, variables: Sequence[tf.Variable]):
        self._entries = {id(v): (weakref.ref(v), i) for i, v in enumerate(variables)}

    def get(self, variable: tf.Variable) -> int | None:
        ref, i = self._entries.get(id(variable), (None, None))
        # A dead variable's id can be reused by a new one: check identity, not just the id.
        return i if ref is not None and ref() is variable else None


class GradientMask(tf.Module):
    """Zeroes chosen gradient elements (or whole variables' gradients); the forward is untouched.

    Plug in between the tape and the optimizer:

        grads = tape.gradient(loss, opt.all_variables)
        opt.apply(grad_mask(grads, opt.all_variables))

    Variables are matched by identity; unlisted variables and None gradients pass through.
    Adam/RMSprop keep moving an element that had momentum before it was masked, so set masks
    before the first update (or freeze the module) when the element must stay bit-identical.
    """

    def __init__(self, variables: Sequence[tf.Variable], *, per_variable: bool = False,
                 name: str = "gradient_mask"):
        super().__init__(name=name)
        self.per_variable = per_variable
        self._lookup = _VariableIndex(variables)
        self.masks = [tf.Variable(tf.ones([] if per_variable else v.shape, tf.bool),
                                  trainable=False, name=f"grad_mask_{i}")
                      for i, v in enumerate(variables)]

    def mask_of(self, variable: tf.Variable) -> tf.Variable:
        """The bool mask variable of `variable` (True = gradient passes)."""
        i = self._lookup.get(variable)
        if i is None:
            raise KeyError(f"variable '{variable.name}' is not covered by this GradientMask")
        return self.masks[i]

    def set(self, variable: tf.Variable, mask: Any) -> None:
        """Set the mask of `variable`: elementwise (variable's shape) or a scalar bool."""
        target = self.mask_of(variable)
        target.assign(_as_mask(mask, target.shape, f"gradient mask of '{variable.name}'"))

    def block(self, variable: tf.Variable) -> None:
        """Zero the whole gradient of `variable`."""
        self.mask_of(variable).assign(tf.zeros_like(self.mask_of(variable)))

    def allow(self, variable: tf.Variable) -> None:
        """Let the whole gradient of `variable` through."""
        self.mask_of(variable).assign(tf.ones_like(self.mask_of(variable)))

    def __call__(self, grads: Sequence[tf.Tensor | None],
                 variables: Sequence[tf.Variable]) -> list[tf.Tensor | None]:
        """Return `grads` with masked entries set to exactly zero."""
        grads, variables = list(grads), list(variables)
        if len(grads) != len(variables):
            raise ValueError(f"{len(grads)} gradients for {len(variables)} variables")
        indices = [self._lookup.get(v) for v in variables]
        return [g if g is None or i is None else _select(self.masks[i], g)
                for g, i in zip(grads, indices)]
