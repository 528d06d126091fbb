"""Off-policy acting outside the compiled steps, mixed into OffPolicyAgent: unit actions in env
units (`to_env`), the page's exploration in NumPy (`host_exploration`, `host_unit`), the NumPy
actor env runners act with (`host_actor`), and what a runner without TensorFlow needs to act
as the agent does (`runner_acting`, rl_sever.runners.host_runner).
"""

from __future__ import annotations

import functools

import numpy as np

from rl_sever.nn.host_math import NUMPY_ACTIVATIONS
from rl_sever.offpolicy.exploration import NumpyActor, unit_to_env


class HostActing:
    """Needs the agent's `actor` (a DenseStack), `encoder`, `action_mid`, `action_half` and
    `action_dim`."""

    def to_env(self, unit_actions):
        """Unit actions ([-1, 1], NumPy or tensors) in env units."""
        return unit_to_env(self.action_mid, self.action_half, unit_actions)

    _to_env = to_env  # (inside the compiled steps)

    def host_exploration(self) -> tuple | None:
        """(fn, kwargs): the page's exploration in NumPy, `fn(actor_output, rng, **kwargs)` ->
        unit actions, `fn` from a module without TensorFlow (rl_sever.offpolicy.exploration),
        so env runners without it can act; None: the page explores with TensorFlow only."""
        return None

    def host_unit(self, out: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Exploration actions in [-1, 1] from the actor's output, in NumPy (`host_exploration`;
        a page may override this instead, and its runners then keep a copy of the agent)."""
        exploration = self.host_exploration()
        if exploration is None:
            raise NotImplementedError(f"{type(self).__name__} explores with TensorFlow only "
                                      "(no host_exploration)")
        fn, kwargs = exploration
        return fn(out, rng, **kwargs)

    def host_actor(self) -> NumpyActor | None:
        """`obs, weights, rng -> unit actions` in NumPy (the actor's MLP on `weights`, the
        arrays of acting_variables), or None where acting needs TensorFlow (an encoder, an
        activation NumPy lacks, a page without host exploration)."""
        own = type(self).host_unit is not HostActing.host_unit
        if (self.encoder is not None or self.actor.activation not in NUMPY_ACTIVATIONS
                or not own and self.host_exploration() is None):
            return None
        return NumpyActor(self.actor.activation, self.actor.activate_last, self.host_unit)

    def runner_acting(self, central: bool) -> dict | None:
        """What an env runner without TensorFlow needs to act as this agent: its NumPy actor
        with the page's exploration as a function it can import (None where the inference
        server acts, `central`), and the map of unit actions to the env's (mid, half, dim).
        None where it cannot: a page's own `host_unit`, `to_env` or `host_actor`, no NumPy
        actor, or an exploration that is not a module's function."""
        cls = type(self)
        if any(getattr(cls, name) is not getattr(HostActing, name)
               for name in ("host_unit", "to_env", "host_actor")):
            return None
        actor = None
        if not central:
            if self.host_actor() is None:
                return None
            fn, kwargs = self.host_exploration()
            if getattr(fn, "__self__", None) is not None or "<locals>" in fn.__qualname__:
                return None  # a method or a closure: it would carry the agent along
            actor = NumpyActor(self.actor.activation, self.actor.activate_last,
                               functools.partial(fn, **kwargs))
        return {"actor": actor,
                "unit_to_env": (self.action_mid, self.action_half, self.action_dim)}
