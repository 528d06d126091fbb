"""The networks' NumPy side, without TensorFlow: the one MLP forward (`DenseStack` runs it on
tensors, the host policies on arrays), the activations NumPy has, the logit a masked-out
action gets, the squashed Gaussian's log-std bounds, and the one LSTM/GRU cell (`cell_step`,
for TensorFlow and NumPy alike; `numpy_cell` on arrays). Processes that never import
TensorFlow (env runners acting on the host) use it.
"""

from __future__ import annotations

import numpy as np

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0  # squashed Gaussian: as in SB3 and the SAC reference code
# The logit of a masked-out action: finite, so entropies stay 0 * MASKED_LOGIT = 0 (not NaN),
# and far enough below any real logit that its probability is exactly zero in float32.
MASKED_LOGIT = -1e8


def _elu(x):
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0)))


NUMPY_ACTIVATIONS = {"tanh": np.tanh, "relu": lambda x: np.maximum(x, 0), "elu": _elu,
                     "silu": lambda x: x / (1.0 + np.exp(-x))}


def mlp_forward(x, layers, activation, *, activate_last: bool = False, matmul=None):
    """The MLP written once: `layers` [(kernel, bias)], `activation` between them (and after
    the last with `activate_last`). TensorFlow or NumPy alike: `matmul` defaults to `@`."""
    last = len(layers) - 1
    for i, (k, b) in enumerate(layers):
        x = (x @ k if matmul is None else matmul(i, x, k)) + b
        if i < last or activate_last:
            x = activation(x)
    return x


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def numpy_ops():
    return np.matmul, _sigmoid, np.tanh, lambda x, n: np.split(x, n, axis=-1)


def cell_step(kind: str, x, h, c, kernel, recurrent, bias, ops):
    """One step of the cell from inputs `x` and the state (h, c; c is None for a GRU): returns
    the new (h, c). `ops` = (matmul, sigmoid, tanh, split) of TensorFlow or NumPy.

    LSTM: i, f, g, o = split(x W + h U + b); c' = s(f) c + s(i) tanh(g); h' = s(o) tanh(c').
    GRU (Cho et al. 2014): z, r = s(x Wzr + h Uzr + bzr); n = tanh(x Wn + (r h) Un + bn);
    h' = (1 - z) n + z h.
    """
    matmul, sigmoid, tanh, split = ops
    if kind == "lstm":
        i, f, g, o = split(matmul(x, kernel) + matmul(h, recurrent) + bias, 4)
        c = sigmoid(f) * c + sigmoid(i) * tanh(g)
        return sigmoid(o) * tanh(c), c
    size = recurrent.shape[0]
    xz, xr, xn = split(matmul(x, kernel) + bias, 3)
    hz, hr = split(matmul(h, recurrent[:, :2 * size]), 2)
    z, r = sigmoid(xz + hz), sigmoid(xr + hr)
    n = tanh(xn + matmul(r * h, recurrent[:, 2 * size:]))
    return (1.0 - z) * n + z * h, None


def numpy_cell(kind: str, x: np.ndarray, state: np.ndarray, weights) -> tuple[np.ndarray, np.ndarray]:
    """One step of a `kind` cell in NumPy on `weights` (kernel, recurrent kernel, bias as
    arrays) from the flat `state` ([h, c] for an LSTM, h for a GRU): (outputs, new state)."""
    ops = numpy_ops()
    h, c = (state, None) if kind == "gru" else ops[3](state, 2)
    h, c = cell_step(kind, x, h, c, *weights, ops)
    return h, (h if c is None else np.concatenate([h, c], -1))
