"""The on-policy policy and value MLPs and the head's distribution in NumPy, without
TensorFlow: what a host policy acts with (rl_sever.onpolicy.host_policy binds one to an agent's
model and reads its weights; an env runner without TensorFlow takes them from the learner,
rl_sever.runners.host_runner). The sampler is reseeded from (seed, env step) every rollout, so
runs stay reproducible and resumable; what a rollout stores of acting (the actions'
log-probabilities, the values) comes from one batched pass after it (`behaviour`).
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import numpy as np
from threadpoolctl import ThreadpoolController

from rl_sever.config.spaces import ActionSpec
from rl_sever.nn.host_math import MASKED_LOGIT, NUMPY_ACTIVATIONS, mlp_forward, numpy_cell


@functools.cache
def blas_controller() -> ThreadpoolController:
    """NumPy's thread pools, found once per process (a few milliseconds)."""
    return ThreadpoolController()


class PolicyShape(NamedTuple):
    """What the NumPy policy computes, as plain data: the head's action spec, the policy and
    value MLPs' layer counts, activations and whether their last layer is activated, whether a
    state-independent log-std follows their weights, and a recurrent core's cell."""

    spec: ActionSpec
    n_pi: int
    pi_activation: str
    pi_activate_last: bool
    vf_activation: str
    vf_activate_last: bool
    has_std: bool
    core_kind: str | None = None
    """A recurrent core's cell (lstm or gru) under the MLPs, or None."""


class NumpyPolicy:
    """An on-policy policy in NumPy on weights `load` receives, in the order [(the core's
    kernel, recurrent kernel, bias), policy kernel, bias, ... value kernel, bias, ...
    (log_std)]."""

    def __init__(self, shape: PolicyShape, seed: int):
        self.shape, self.seed = shape, int(seed)
        self.core_kind = shape.core_kind  # a recurrent core's cell (rl_sever.nn.host_math)
        self.spec, self.n_pi = shape.spec, shape.n_pi
        self._pi_act = NUMPY_ACTIVATIONS[shape.pi_activation]
        self._vf_act = NUMPY_ACTIVATIONS[shape.vf_activation]
        self.weights: list[tuple[np.ndarray, np.ndarray]] = []  # the policy's layers
        self.value_weights: list[tuple[np.ndarray, np.ndarray]] = []
        self.std: np.ndarray | None = None
        self.core_weights: list[np.ndarray] = []
        self.outputs: list[np.ndarray] = []  # the core's outputs of the rollout, step by step
        self.rng = np.random.default_rng(self.seed)
        if self.spec.kind == "multidiscrete":
            self.splits = np.cumsum(self.spec.nvec)[:-1]

    def load(self, values) -> None:
        """Take the weights as arrays (the update call returns them; a runner receives them)."""
        values = [np.asarray(v) for v in values]
        if self.shape.has_std:
            self.std = np.exp(values.pop()).astype(np.float32)
        if self.core_kind is not None:
            self.core_weights, values = values[:3], values[3:]
        layers = list(zip(values[0::2], values[1::2]))
        self.weights, self.value_weights = layers[:self.n_pi], layers[self.n_pi:]

    def sync(self, step: int) -> None:
        """Reseed the sampler from (seed, `step`) for the rollout starting at env step `step`."""
        self.rng = np.random.default_rng([self.seed % 2**32, int(step)])
        self.outputs = []

    def value(self, x: np.ndarray) -> np.ndarray:
        """V from the heads' input `x`."""
        return mlp_forward(x, self.value_weights, self._vf_act,
                           activate_last=self.shape.vf_activate_last)

    def _heads_input(self, obs: np.ndarray, extra) -> tuple[np.ndarray, tuple, np.ndarray | None]:
        """What the heads read, the new recurrent state ((state,) or ()) and the mask, from the
        compiled act step's inputs (obs, then the state and the mask where the agent has them)."""
        x = np.asarray(obs)
        x = (x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32))
        x, extra = x.reshape(x.shape[0], -1), list(extra)
        if self.core_kind is None:
            return x, (), (extra[0] if extra else None)
        x, state = numpy_cell(self.core_kind, x, extra.pop(0), self.core_weights)
        return x, (state.astype(np.float32),), (extra[0] if extra else None)

    def params(self, x: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """The head's parameters (logits or Gaussian mean) from the heads' input `x`; with a
        `mask`, forbidden actions' logits are the compiled head's MASKED_LOGIT."""
        p = mlp_forward(x, self.weights, self._pi_act, activate_last=self.shape.pi_activate_last)
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
        if self.core_kind is not None:  # the recurrent core's outputs, kept while sampling
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
            value = self.value(x)[:, 0]
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
