"""The networks' NumPy side, without TensorFlow: the one MLP forward (`DenseStack` runs it on
tensors, the host policies on arrays), the activations NumPy has, the logit a masked-out
action gets and the squashed Gaussian's log-std bounds. Processes that never import
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
