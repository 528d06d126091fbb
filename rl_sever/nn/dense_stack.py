"""Networks of the off-policy agents: MLP stacks (single or a batched ensemble of critics),
Polyak averaging, and the tanh-squashed Gaussian used by SAC.

Critics are `DenseStack`s with `members` = number of Q-functions: all members run in one
batched matmul per layer. A stack can be evaluated with its weights read through `sever`
(`severed=True`): gradient still flows into the *inputs* (dQ/da for an actor loss) but has no
path to the weights, so the audit proves the actor loss never reaches the critic.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from rl_sever.config.run import ACTIVATIONS
from rl_sever.isolation import sever

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0  # as in SB3 and the SAC reference code
_LOG2 = math.log(2.0)


def tf_variables(variables) -> list[tf.Variable]:
    """The tf.Variables behind a list of tf / Keras 3 variables (what GradientTape watches)."""
    return [v if isinstance(v, tf.Variable) else v.value for v in variables]


class DenseStack(tf.Module):
    """An MLP; with `members` > 0 an ensemble of that many independent MLPs.

    Weights start as PyTorch's nn.Linear default, U(+-1/sqrt(fan_in)), the initialisation the
    SB3 reference figures were obtained with. Input [batch, in] (shared by every member) or,
    for an ensemble, [members, batch, in]; output [batch, out] or [members, batch, out].
    """

    def __init__(
        self,
        in_dim: int,
        sizes: list[int],
        out_dim: int,
        activation: str = "relu",
        *,
        members: int = 0,
        seed: int | None = None,
        name: str = "mlp",
    ):
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
            self.kernels.append(tf.Variable(k, name=f"{name}/dense{i}/kernel"))
            self.biases.append(tf.Variable(b.astype(np.float32), name=f"{name}/dense{i}/bias"))

    @property
    def weights(self) -> list[tf.Variable]:
        return [v for kb in zip(self.kernels, self.biases) for v in kb]

    def __call__(
        self, x: tf.Tensor, *, severed: bool = False, member: int | None = None
    ) -> tf.Tensor:
        """Forward pass; `member` evaluates one member of an ensemble only ([batch, out])."""
        act = keras.activations.get(self.activation)
        last = len(self.kernels) - 1
        for i, (k, b) in enumerate(zip(self.kernels, self.biases)):
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
        twin = DenseStack(
            self.dims[0],
            self.dims[1:-1],
            self.dims[-1],
            self.activation,
            members=self.members,
            name=name,
        )
        for t, s in zip(twin.weights, self.weights):
            t.assign(s)
        return twin


def polyak_update(online: list, target: list, tau: float | tf.Tensor) -> None:
    """target <- (1 - tau) * target + tau * online, variable by variable (in place)."""
    for s, t in zip(online, target):
        t.assign((1.0 - tau) * t + tau * tf.cast(s, t.dtype))


def squashed_gaussian_sample(mean: tf.Tensor, log_std: tf.Tensor, seed: tf.Tensor):
    """Reparameterised sample a = tanh(u), u ~ N(mean, std), and log pi(a) (summed over dims).

    log pi(a) = log N(u) - sum log(1 - tanh(u)^2): the change of variables of the squashing,
    with log(1 - tanh(u)^2) written as 2 (log 2 - u - softplus(-2u)), which stays finite where
    1 - tanh(u)^2 underflows.
    """
    eps = tf.random.stateless_normal(tf.shape(mean), seed)
    u = mean + tf.exp(log_std) * eps
    log_normal = -0.5 * tf.square(eps) - log_std - 0.5 * math.log(2.0 * math.pi)
    log_det = 2.0 * (_LOG2 - u - tf.nn.softplus(-2.0 * u))
    return tf.tanh(u), tf.reduce_sum(log_normal - log_det, axis=-1)


def split_mean_log_std(out: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    mean, log_std = tf.split(out, 2, axis=-1)
    return mean, tf.clip_by_value(log_std, LOG_STD_MIN, LOG_STD_MAX)
