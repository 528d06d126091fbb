"""Keras building blocks of every network: the one MLP (`DenseStack`: bodies, heads, critic
ensembles, severed reads; its forward pass is rl_sever.nn.host_math.mlp_forward, which the host
policies run in NumPy), the initialisers of the CNN layers, and the tf.Variables behind Keras
variables.

`DenseStack` is one Keras layer holding an MLP, or with `members` > 0 an ensemble of that many
independent MLPs (the off-policy critics). It can be evaluated with its weights read through
`sever` (`severed=True`): gradient still flows into the *inputs* (dQ/da for an actor loss) but
has no path to the weights, so the audit proves the actor loss never reaches the critic.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from rl_sever.config.run import ACTIVATIONS
from rl_sever.isolation import sever
from rl_sever.nn.host_math import mlp_forward


def initializer(gain: float, ortho: bool):
    """Orthogonal with `gain` (SB3 / CleanRL practice), or Glorot uniform."""
    return keras.initializers.Orthogonal(gain=gain) if ortho else "glorot_uniform"


def tf_variables(variables) -> list[tf.Variable]:
    """The tf.Variables behind a list of tf / Keras 3 variables (what GradientTape watches)."""
    return [v if isinstance(v, tf.Variable) else v.value for v in variables]


INITS = ("torch", "orthogonal", "glorot")


def draw_kernel(rng, init: str, fan_in: int, fan_out: int, gain: float, lead: tuple) -> np.ndarray:
    """A kernel [*lead, fan_in, fan_out] drawn from `rng` by `init` (one of INITS)."""
    if init in ("torch", "glorot"):  # torch: PyTorch's nn.Linear default, U(+-1/sqrt(fan_in))
        bound = 1.0 / math.sqrt(fan_in) if init == "torch" else math.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-bound, bound, (*lead, fan_in, fan_out))
    # Orthogonal (Saxe et al.): the Q of a Gaussian matrix's QR, signs fixed by R's diagonal.
    big, small = max(fan_in, fan_out), min(fan_in, fan_out)
    out = []
    for _ in range(int(np.prod(lead, dtype=int))):
        q, r = np.linalg.qr(rng.standard_normal((big, small)))
        q = q * np.sign(np.diag(r))
        out.append(gain * (q if fan_in >= fan_out else q.T))
    return np.reshape(out, (*lead, fan_in, fan_out))


class DenseStack(keras.layers.Layer):
    """An MLP `in_dim -> sizes... -> out_dim`; with `members` > 0 an ensemble of that many.
    Without `out_dim` the last of `sizes` is the output, activated too (an encoder body).

    `init`: "torch", PyTorch's nn.Linear default U(+-1/sqrt(fan_in)) for kernels and biases
    (the SB3 off-policy reference figures were obtained with it); "orthogonal", gain sqrt(2)
    and `out_gain` on the output layer, zero biases (SB3 / CleanRL on-policy practice);
    "glorot", Glorot uniform, zero biases. Drawn from NumPy with `seed`. Input [batch, in]
    (shared by every member) or, for an ensemble, [members, batch, in]; output [batch, out] or
    [members, batch, out]. `weights` lists kernel and bias layer by layer. `hidden_dtype`
    bfloat16 computes the hidden-to-hidden matmuls in bfloat16 (fast with AMX and on Zen 4).
    """

    def __init__(self, in_dim: int, sizes: list[int], out_dim: int | None = None,
                 activation: str = "relu", *, init: str = "torch", out_gain: float = 1.0,
                 members: int = 0, seed: int | None = None, hidden_dtype: str = "float32",
                 name: str = "mlp"):
        super().__init__(name=name)
        if activation not in ACTIVATIONS:  # the one table every network takes its names from
            raise ValueError(f"unknown activation '{activation}'")
        if hidden_dtype not in ("float32", "bfloat16"):
            raise ValueError(f"hidden_dtype must be float32 or bfloat16, got '{hidden_dtype}'")
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got '{init}'")
        self.members, self.activation, self.hidden_dtype = members, activation, hidden_dtype
        self.init, self.out_gain, self.activate_last = init, float(out_gain), out_dim is None
        self.dims = [int(in_dim), *map(int, sizes), *([] if out_dim is None else [int(out_dim)])]
        # Without a seed, draw one from NumPy's global state (seeded by keras.utils.set_random_seed).
        rng = np.random.default_rng(np.random.randint(2**31) if seed is None else seed)
        lead = (members,) if members else ()
        self.kernels, self.biases = [], []
        for i, (fan_in, fan_out) in enumerate(zip(self.dims[:-1], self.dims[1:])):
            last = i == len(self.dims) - 2 and not self.activate_last
            gain = self.out_gain if last else math.sqrt(2)
            k = draw_kernel(rng, init, fan_in, fan_out, gain, lead).astype(np.float32)
            b_shape = (*lead, 1, fan_out) if members else (fan_out,)
            bound = 1.0 / math.sqrt(fan_in)
            b = rng.uniform(-bound, bound, b_shape) if init == "torch" else np.zeros(b_shape)
            for kind, value, out in (("kernel", k, self.kernels),
                                     ("bias", b.astype(np.float32), self.biases)):
                out.append(self.add_weight(value.shape, name=f"dense{i}_{kind}",
                                           initializer=lambda shape, dtype=None, v=value: v))
                setattr(self, f"{kind}{i}", out[-1])  # an attribute: what tf.train.Checkpoint saves
        self.built = True

    def call(self, x, severed: bool = False, member: int | None = None):
        """Forward pass; `member` evaluates one member of an ensemble only ([batch, out])."""
        weights = [(tf.convert_to_tensor(k), tf.convert_to_tensor(b))
                   for k, b in zip(self.kernels, self.biases)]
        if severed:
            # The weights are read as constants: a loss evaluated this way cannot reach them.
            weights = sever(weights)
        if not self.members:
            return self._mlp(x, weights)
        if member is not None:
            return self._mlp(x, [(k[member], b[member]) for k, b in weights])
        # One matmul per member and layer, stacked at the end: independent ops the executor runs
        # side by side, where one batched matmul ran on one core (two 256x256 MLPs, batch 256:
        # SAC update 7.3 -> 4.9 ms without XLA; the same under XLA).
        per_member = zip(*[zip(tf.unstack(k, self.members), tf.unstack(b, self.members))
                           for k, b in weights])
        inputs = [x] * self.members if x.shape.rank == 2 else tf.unstack(x, self.members)
        return tf.stack([self._mlp(h, list(w)) for h, w in zip(inputs, per_member)])

    def _mlp(self, x, weights):
        last = len(weights) - 1

        def matmul(i, x, k):
            if 0 < i < last and self.hidden_dtype == "bfloat16":
                # Hidden-to-hidden products in bfloat16 (where the FLOPs are), float32 weights,
                # biases, activations and gradients; first and last layers stay float32.
                return tf.cast(tf.matmul(tf.cast(x, tf.bfloat16), tf.cast(k, tf.bfloat16)), x.dtype)
            return tf.matmul(x, k)

        return mlp_forward(x, weights, keras.activations.get(self.activation),
                           activate_last=self.activate_last, matmul=matmul)

    def copy(self, name: str) -> DenseStack:
        """A new stack with the same shape and (copied) weights: a target network."""
        sizes, out = (self.dims[1:], None) if self.activate_last else (self.dims[1:-1], self.dims[-1])
        twin = DenseStack(self.dims[0], sizes, out, self.activation, init=self.init,
                          members=self.members, hidden_dtype=self.hidden_dtype, name=name)
        for t, s in zip(twin.weights, self.weights):
            t.assign(s)
        return twin
