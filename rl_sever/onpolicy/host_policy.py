"""Acting on the host (config `host_act`): the on-policy policy and value MLPs in NumPy
(rl_sever.onpolicy.numpy_policy, on `DenseStack`'s one MLP definition) bound to an agent's
model, for small policies on CPU, where a compiled act call costs more than the env step
(README, "Acting on the host"). Weights are read once per rollout (the update call returns
them; anything else that may change them marks them stale). Used only without an encoder,
with an activation NumPy has and no GPU; `host_act: on` insists, `off` never uses it.
"""

from __future__ import annotations

import tensorflow as tf

from rl_sever.core.compiled import FastCall, per_agent
from rl_sever.errors import ConfigError
from rl_sever.nn.host_math import NUMPY_ACTIVATIONS
from rl_sever.nn.layers import tf_variables
from rl_sever.onpolicy.numpy_policy import (
    NumpyPolicy,
    PolicyShape,
    blas_controller,  # noqa: F401  (its earlier path)
)


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


def policy_shape(model) -> PolicyShape:
    """The plain description of `model`'s policy and value MLPs the NumPy policy needs."""
    return PolicyShape(model.head.spec, len(model.pi.kernels), model.pi.activation,
                       model.pi.activate_last, model.vf.activation, model.vf.activate_last,
                       model.log_std is not None,
                       model.core.kind if model.core is not None else None)


def policy_variables(model) -> list[tf.Variable]:
    """The variables the NumPy policy computes with, in the order its `load` takes them."""
    variables = [*(model.core.weights if model.core is not None else []),
                 *model.pi.weights, *model.vf.weights]
    if model.log_std is not None:
        variables.append(model.log_std)
    return tf_variables(variables)


class HostPolicy(NumpyPolicy):
    """NumPy twin of an on-policy ActorCritic without an encoder: its policy and value MLPs and
    the head's distribution, the weights read from the model's variables."""

    def __init__(self, model, seed: int):
        super().__init__(policy_shape(model), seed)
        self.model = model
        self.core = model.core  # a recurrent policy's LSTM/GRU (rl_sever.nn.recurrent), or None
        self.variables = policy_variables(model)
        # All weights in one compiled read: a third of the time of one eager read per variable.
        self._read = FastCall(per_agent(tf.function(self.read_variables, autograph=False)), [])
        self.stale = True  # the weights must be read before the next rollout

    def read_variables(self) -> list[tf.Tensor]:
        """The policy's weights as tensors (inside a compiled step: after its updates)."""
        return [tf.identity(v) for v in self.variables]

    def load(self, values) -> None:
        """Take the weights `read_variables` returned (the update call returns them)."""
        super().load(values)
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
        super().sync(step)
