"""Acting on the host (config `host_act`): the on-policy policy and value MLPs in NumPy
(`DenseStack.numpy_forward`, the one MLP definition) and the head's distribution, for small
policies on CPU, where a compiled act call costs more than the env step (README, "Acting on
the host"). Weights are read once per rollout (the update call returns them; anything else
that may change them marks them stale); the sampler is reseeded from (seed, env step) every
rollout, so runs stay reproducible and resumable. What the rollout stores of acting (the
actions' log-probabilities, the values) is computed once per rollout in one batched pass
(`behaviour`): per step it cost more than the acting. Used only without an encoder, with an
activation NumPy has and no GPU; `host_act: on` insists, `off` never uses it.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import tensorflow as tf
from threadpoolctl import ThreadpoolController

from rl_sever.core.compiled import FastCall
from rl_sever.errors import ConfigError
from rl_sever.nn.distributions import MASKED_LOGIT
from rl_sever.nn.layers import NUMPY_ACTIVATIONS, tf_variables


@functools.cache
def blas_controller() -> ThreadpoolController:
    """NumPy's thread pools, found once per process (a few milliseconds)."""
    return ThreadpoolController()


def host_act_reason(model, mode: str) -> str | None:
    """Why the host policy cannot serve `model` (None: it can)."""
    if model.encoder is not None:
        return "the policy reads an encoder (images or a user's network)"
    if model.cfg.activation not in NUMPY_ACTIVATIONS:
        return f"activation {model.cfg.activation} has no NumPy form here"
    if mode == "auto" and tf.config.list_logical_devices("GPU"):
        return "a GPU is visible (the compiled act call is the faster one there)"
    return None


def make_host_policy(model, mode: str, seed: int) -> HostPolicy | None:
    """The host policy for `model` under config `host_act` = `mode`, or None."""
    if mode == "off":
        return None
    reason = host_act_reason(model, mode)
    if reason is None:
        return HostPolicy(model, seed)
    if mode == "on":
        raise ConfigError(f"host_act=on cannot apply: {reason}; use host_act=auto or off")
    return None


class HostPolicy:
    """NumPy twin of an on-policy ActorCritic without an encoder: its policy and value MLPs and
    the head's distribution."""

    def __init__(self, model, seed: int):
        self.model, self.seed = model, int(seed)
        self.spec = model.head.spec
        self.n_pi = len(model.pi.kernels)
        self.core = model.core  # a recurrent policy's LSTM/GRU (rl_sever.nn.recurrent), or None
        variables = [*(self.core.weights if self.core is not None else []),
                     *model.pi.weights, *model.vf.weights]
        if model.log_std is not None:
            variables.append(model.log_std)
        self.variables = tf_variables(variables)
        # All weights in one compiled read: a third of the time of one eager read per variable.
        self._read = FastCall(tf.function(self.read_variables, autograph=False), [])
        self.weights: list[tuple[np.ndarray, np.ndarray]] = []  # the policy's layers
        self.value_weights: list[tuple[np.ndarray, np.ndarray]] = []
        self.std: np.ndarray | None = None
        self.core_weights: list[np.ndarray] = []
        self.outputs: list[np.ndarray] = []  # the core's outputs of the rollout, step by step
        self.stale = True  # the weights must be read before the next rollout
        self.rng = np.random.default_rng(self.seed)
        if self.spec.kind == "multidiscrete":
            self.splits = np.cumsum(self.spec.nvec)[:-1]

    def read_variables(self) -> list[tf.Tensor]:
        """The policy's weights as tensors (inside a compiled step: after its updates)."""
        return [tf.identity(v) for v in self.variables]

    def load(self, values) -> None:
        """Take the weights `read_variables` returned (the update call returns them)."""
        values = [np.asarray(v) for v in values]
        if self.model.log_std is not None:
            self.std = np.exp(values.pop()).astype(np.float32)
        if self.core is not None:
            self.core_weights, values = values[:3], values[3:]
        layers = list(zip(values[0::2], values[1::2]))
        self.weights, self.value_weights = layers[:self.n_pi], layers[self.n_pi:]
        self.stale = False

    def invalidate(self) -> None:
        """The weights may have changed outside an update: read them before the next rollout."""
        self.stale = True

    def refresh(self) -> None:
        """Read the weights if they may have changed since the last read."""
        if self.stale:
            self.load(self._read())

    def sync(self, step: int) -> None:
        """Reseed the sampler from (seed, `step`); read the weights unless the last update
        already returned them."""
        self.refresh()
        self.rng = np.random.default_rng([self.seed % 2**32, int(step)])
        self.outputs = []

    def _heads_input(self, obs: np.ndarray, extra) -> tuple[np.ndarray, tuple, np.ndarray | None]:
        """What the heads read, the new recurrent state ((state,) or ()) and the mask, from the
        compiled act step's inputs (obs, then the state and the mask where the agent has them)."""
        x = np.asarray(obs)
        x = (x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32))
        x, extra = x.reshape(x.shape[0], -1), list(extra)
        if self.core is None:
            return x, (), (extra[0] if extra else None)
        x, state = self.core.numpy_step(x, extra.pop(0), self.core_weights)
        return x, (state.astype(np.float32),), (extra[0] if extra else None)

    def params(self, x: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """The head's parameters (logits or Gaussian mean) from the heads' input `x`; with a
        `mask`, forbidden actions' logits are the compiled head's MASKED_LOGIT."""
        p = self.model.pi.numpy_forward(x, self.weights)
        return p if mask is None else np.where(mask, p, np.float32(MASKED_LOGIT))

    def sample(self, obs: np.ndarray, *extra):
        """Sampled actions for the act step's inputs (and a recurrent policy's next state)."""
        x, state, mask = self._heads_input(obs, extra)
        if state:
            self.outputs.append(x)  # for `behaviour`, batched after the rollout
        p = self.params(x, mask)
        if self.spec.kind == "box":
            noise = self.rng.standard_normal(p.shape, dtype=np.float32)
            actions = (p + self.std * noise).astype(np.float32)
        else:
            g = p - np.log(-np.log(self.rng.random(p.shape, dtype=np.float32).clip(1e-20, 1.0)))
            if mask is not None:  # a Gumbel draw cannot lift a masked logit past an allowed one
                g = np.where(mask, g, -np.inf)
            actions = self._argmax(g)  # Gumbel-max: a draw from softmax(logits)
        return (actions, *state) if state else actions

    def behaviour(self, obs: np.ndarray, actions: np.ndarray,
                  masks: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """log pi(actions | obs) and V(obs) of a whole rollout ([T, N, ...]) in one batched pass,
        with the weights it was collected with (per step, they cost more than the acting)."""
        lead = actions.shape[:2]
        actions = actions.reshape(-1, *actions.shape[2:])
        if self.core is not None:  # the recurrent core's outputs, kept while sampling
            x, self.outputs = np.concatenate(self.outputs), []
        else:
            x = self._heads_input(obs.reshape(-1, *obs.shape[2:]), ())[0]
        if masks is not None:
            masks = masks.reshape(-1, masks.shape[-1])
        # One BLAS thread: on a whole rollout OpenBLAS goes multi-threaded, and its workers
        # spin after each call, taking the cores from TensorFlow's update (PPO CartPole: 30
        # -> 40 ms per iteration, 1.5x the process's CPU time).
        with blas_controller().limit(limits=1, user_api="blas"):
            log_prob = self.log_prob(self.params(x, masks), actions)
            value = self.model.vf.numpy_forward(x, self.value_weights)[:, 0]
        return log_prob.reshape(lead), value.reshape(lead)

    def log_prob(self, p: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """log pi(actions) under the head's parameters `p` (the compiled distribution's)."""
        if self.spec.kind == "box":
            z = (actions - p) / self.std
            return (-0.5 * np.square(z) - np.log(self.std) - 0.5 * math.log(2 * math.pi)).sum(-1)
        parts = [p] if self.spec.kind == "discrete" else np.split(p, self.splits, axis=-1)
        cols = actions[:, None] if self.spec.kind == "discrete" else actions
        rows = np.arange(p.shape[0])
        out = 0.0
        for i, logits in enumerate(parts):
            top = logits.max(-1)
            logz = top + np.log(np.exp(logits - top[:, None]).sum(-1))
            out = out + logits[rows, cols[:, i]] - logz
        return out

    def mode(self, obs: np.ndarray, *extra):
        """The greedy actions for the act step's inputs (and a recurrent policy's next state)."""
        x, state, mask = self._heads_input(obs, extra)
        p = self.params(x, mask)
        actions = p.astype(np.float32) if self.spec.kind == "box" else self._argmax(p)
        return (actions, *state) if state else actions

    def _argmax(self, x: np.ndarray) -> np.ndarray:
        if self.spec.kind == "discrete":
            return np.argmax(x, axis=-1).astype(np.int32)
        return np.stack([np.argmax(s, axis=-1) for s in np.split(x, self.splits, axis=-1)],
                        axis=-1).astype(np.int32)
