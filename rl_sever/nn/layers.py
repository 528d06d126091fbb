"""Keras building blocks shared by every network: MLPs and initialised linear layers."""

from __future__ import annotations

import math

import keras


def initializer(gain: float, ortho: bool):
    """Orthogonal with `gain` (SB3 / CleanRL practice), or Glorot uniform."""
    return keras.initializers.Orthogonal(gain=gain) if ortho else "glorot_uniform"


def mlp(sizes: list[int], activation: str, *, ortho: bool = True, name: str = "mlp") -> keras.Sequential:
    """Dense layers of the given widths, each followed by `activation`."""
    layers = [
        keras.layers.Dense(h, activation=activation, kernel_initializer=initializer(math.sqrt(2), ortho),
                           bias_initializer="zeros", name=f"{name}_{i}")
        for i, h in enumerate(sizes)
    ]
    return keras.Sequential(layers, name=name)


def linear(units: int, gain: float, *, ortho: bool = True, name: str) -> keras.layers.Dense:
    return keras.layers.Dense(units, kernel_initializer=initializer(gain, ortho),
                              bias_initializer="zeros", name=name)
