"""Keras building blocks of every network: MLPs (`mlp`, and `DenseStack` for ensembles and
severed reads), initialised linear layers, and the tf.Variables behind Keras variables.

`DenseStack` is one Keras layer holding an MLP, or with `members` > 0 an ensemble of that many
independent MLPs evaluated in one batched matmul per layer (the off-policy critics). It can be
evaluated with its weights read through `sever` (`severed=True`): gradient still flows into the
*inputs* (dQ/da for an actor loss) but has no path to the weights, so the audit proves the actor
loss never reaches the critic.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from rl_sever.config.run import ACTIVATIONS
from rl_sever.isolation import sever


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


def tf_variables(variables) -> list[tf.Variable]:
    """The tf.Variables behind a list of tf / Keras 3 variables (what GradientTape watches)."""
    return [v if isinstance(v, tf.Variable) else v.value for v in variables]


class DenseStack(keras.layers.Layer):
    """An MLP `in_dim -> sizes... -> out_dim`; with `members` > 0 an ensemble of that many.

    Weights start as PyTorch's nn.Linear default, U(+-1/sqrt(fan_in)), the initialisation the
    SB3 reference figures were obtained with, drawn from NumPy with `seed`. Input [batch, in]
    (shared by every member) or, for an ensemble, [members, batch, in]; output [batch, out] or
    [members, batch, out]. `weights` lists kernel and bias layer by layer.
    """

    def __init__(self, in_dim: int, sizes: list[int], out_dim: int, activation: str = "relu", *,
                 members: int = 0, seed: int | None = None, name: str = "mlp"):
        super().__init__(name=name)
        if activation not in ACTIVATIONS:  # the one table every network takes its names from
            raise ValueError(f"unknown activation '{activation}'")
        self.members, self.activation = members, activation
        self.dims = [int(in_dim), *map(int, sizes), int(out_dim)]
        # Without a seed, draw one from NumPy's global state (seeded by keras.utils.set_random_seed).
        rng = np.random.default_rng(np.random.randint(2**31) if seed is None else seed)
        lead = (members,) if members else ()
        self.kernels, self.biases = [], []
        for i, (fan_in, fan_out) in enumerate(zip(self.dims[:-1], self.dims[1:])):
            bound = 1.0 / math.sqrt(fan_in)
            k = rng.uniform(-bound, bound, (*lead, fan_in, fan_out)).astype(np.float32)
            b = rng.uniform(-bound, bound, (*lead, 1, fan_out) if members else (fan_out,))
            for kind, value, out in (("kernel", k, self.kernels),
                                     ("bias", b.astype(np.float32), self.biases)):
                out.append(self.add_weight(value.shape, name=f"dense{i}_{kind}",
                                           initializer=lambda shape, dtype=None, v=value: v))
                setattr(self, f"{kind}{i}", out[-1])  # an attribute: what tf.train.Checkpoint saves
        self.built = True

    def call(self, x, severed: bool = False, member: int | None = None):
        """Forward pass; `member` evaluates one member of an ensemble only ([batch, out])."""
        act = keras.activations.get(self.activation)
        last = len(self.kernels) - 1
        for i, (k, b) in enumerate(zip(self.kernels, self.biases)):
            k, b = tf.convert_to_tensor(k), tf.convert_to_tensor(b)
            if member is not None:
                k, b = k[member], b[member]
            if severed:
                # The weights are read as constants: a loss evaluated this way cannot reach them.
                k, b = sever((k, b))
            if self.members and member is None and x.shape.rank == 2:
                x = tf.einsum("bi,mio->mbo", x, k) + b  # one input shared by every member
            else:
                x = tf.matmul(x, k) + b
            if i < last:
                x = act(x)
        return x

    def copy(self, name: str) -> DenseStack:
        """A new stack with the same shape and (copied) weights: a target network."""
        twin = DenseStack(self.dims[0], self.dims[1:-1], self.dims[-1], self.activation,
                          members=self.members, name=name)
        for t, s in zip(twin.weights, self.weights):
            t.assign(s)
        return twin
