"""The recurrent core of a policy with memory (network.recurrent: lstm or gru).

`RecurrentCore` holds one LSTM or GRU layer whose cell is written once (`cell_step`) for
TensorFlow and NumPy alike, as `mlp_forward` is for the MLPs. Its state is one flat vector per
sequence: [h, c] for an LSTM (2 x size), h for a GRU (size); zeros start an episode.

Two ways through it:
    step(x, state)                  one time step of a batch of envs (acting)
    sequence(x, state0, starts)     whole sequences [C, L, F] from their first state, the state
                                    zeroed before every step flagged in `starts` (an episode
                                    that began inside the sequence): what the update unrolls,
                                    back-propagating through time within each sequence.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from rl_sever.nn.host_math import cell_step, numpy_cell
from rl_sever.nn.layers import draw_kernel

KINDS = ("lstm", "gru")
# Sequences up to this long (known when tracing) are unrolled step by step in the graph: a
# tf.scan's loop costs more per step than a small cell's arithmetic (PPO CartPole, 32-step LSTM
# sequences: 7 ms per gradient step with the loop).
UNROLL_MAX = 64


def _tf_ops():
    return tf.matmul, tf.sigmoid, tf.tanh, lambda x, n: tf.split(x, n, axis=-1)


class RecurrentCore(keras.layers.Layer):
    """One LSTM or GRU layer `in_dim -> size`. Input kernel Glorot uniform, recurrent kernel
    orthogonal, zero biases (the LSTM's forget gate: 1), drawn from NumPy (seeded by
    keras.utils.set_random_seed, as DenseStack)."""

    def __init__(self, in_dim: int, size: int, kind: str = "lstm", *, name: str = "recurrent"):
        super().__init__(name=name)
        if kind not in KINDS:
            raise ValueError(f"recurrent kind must be one of {KINDS}, got '{kind}'")
        self.kind, self.size, self.in_dim = kind, int(size), int(in_dim)
        gates = 4 if kind == "lstm" else 3
        rng = np.random.default_rng(np.random.randint(2**31))
        kernel = draw_kernel(rng, "glorot", self.in_dim, gates * self.size, 1.0, ())
        recurrent = np.concatenate([draw_kernel(rng, "orthogonal", self.size, self.size, 1.0, ())
                                    for _ in range(gates)], axis=1)
        bias = np.zeros(gates * self.size)
        if kind == "lstm":  # the forget gate (gates i, f, g, o) starts open
            bias[self.size:2 * self.size] = 1.0
        for attr, value in (("kernel", kernel), ("recurrent_kernel", recurrent), ("bias", bias)):
            value = value.astype(np.float32)
            setattr(self, attr, self.add_weight(value.shape, name=attr,
                                                initializer=lambda shape, dtype=None, v=value: v))
        self.built = True

    @property
    def state_dim(self) -> int:
        """Width of the flat state: [h, c] for an LSTM, h for a GRU."""
        return 2 * self.size if self.kind == "lstm" else self.size

    def _weights(self):
        return (tf.convert_to_tensor(self.kernel), tf.convert_to_tensor(self.recurrent_kernel),
                tf.convert_to_tensor(self.bias))

    def _split_state(self, state):
        if self.kind == "gru":
            return state, None
        return _tf_ops()[3](state, 2)

    def _join(self, h, c):
        return h if c is None else tf.concat([h, c], -1)

    def step(self, x: tf.Tensor, state: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """One time step: inputs [B, in_dim], states [B, state_dim] -> (outputs [B, size],
        new states)."""
        h, c = cell_step(self.kind, x, *self._split_state(state), *self._weights(), _tf_ops())
        return h, self._join(h, c)

    def sequence(self, x: tf.Tensor, state0: tf.Tensor, starts: tf.Tensor,
                 return_states: bool = False):
        """Sequences [C, L, in_dim] from states `state0` [C, state_dim], the state zeroed
        before step t wherever `starts[:, t]` is True. Returns outputs [C, L, size] (and, with
        `return_states`, the state after every step [C, L, state_dim], before any reset)."""
        weights, ops = self._weights(), _tf_ops()

        def one(state, x_t, start_t):
            state = tf.where(start_t[:, None], tf.zeros_like(state), state)
            h, c = cell_step(self.kind, x_t, *self._split_state(state), *weights, ops)
            return h, self._join(h, c)

        length = starts.shape[1]
        if length is not None and length <= UNROLL_MAX:
            state, outs, states = state0, [], []
            for t in range(length):
                h, state = one(state, x[:, t], starts[:, t])
                outs.append(h)
                states.append(state)
            outs = tf.stack(outs, axis=1)
            return (outs, tf.stack(states, axis=1)) if return_states else outs

        h0 = tf.zeros([tf.shape(x)[0], self.size], x.dtype)
        outs, states = tf.scan(lambda carry, inputs: one(carry[1], *inputs),
                               (tf.transpose(x, [1, 0, 2]), tf.transpose(starts)),
                               initializer=(h0, state0))
        outs = tf.transpose(outs, [1, 0, 2])
        return (outs, tf.transpose(states, [1, 0, 2])) if return_states else outs

    def numpy_step(self, x: np.ndarray, state: np.ndarray, weights) -> tuple[np.ndarray, np.ndarray]:
        """`step` in NumPy on `weights` (kernel, recurrent kernel, bias as arrays)."""
        return numpy_cell(self.kind, x, state, weights)
