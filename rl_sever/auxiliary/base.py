"""The auxiliary-module interface, its settings, and the name -> class registry."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import ClassVar

import numpy as np
import tensorflow as tf

from rl_sever.config.auxiliary import AUXILIARY, AuxiliaryConfig
from rl_sever.config.spaces import ActionSpec
from rl_sever.errors import ConfigError, UnknownNameError, UnsupportedSpaceError, suggest
from rl_sever.objective.term import LossTerm


class AuxContext:
    """What an auxiliary loss reads: one-step transitions and encoder features.

    `features` are the encodings of `obs` as this loss may see them: live when the agent lets
    auxiliary losses train the encoder, severed otherwise; `encode` applies the same rule to
    other observations. Rewards and next observations are one-step even when the agent
    learns from n-step returns.
    """

    def __init__(self, batch: dict, features: tf.Tensor, encode: Callable[[tf.Tensor], tf.Tensor],
                 seed: tf.Tensor):
        self.obs = batch["obs"]
        self.actions = batch["actions"]
        self.rewards = batch.get("step_rewards", batch.get("rewards"))
        self.next_obs = batch.get("step_next_obs", batch.get("next_obs"))
        self.features = features
        self.encode = encode
        self.seed = seed
        self._next_features = None

    @property
    def next_features(self) -> tf.Tensor:
        if self._next_features is None:
            self._next_features = self.encode(self.next_obs)
        return self._next_features


class AuxiliaryModule(tf.Module):
    """Base class: subclasses build their networks in __init__ and implement `loss`.

    `name` is the loss name (audit row, `loss/<name>` in TensorBoard); `modules()` names the
    variable groups the module owns (audit columns; the agent's optimizer trains them with this
    loss only). `needs_transitions`: the loss reads actions / rewards / next observations.
    `components`: the named parts `loss` also returns (logged as loss/<name>_<component>).
    """

    name: ClassVar[str] = ""
    needs_transitions: ClassVar[bool] = False
    components: ClassVar[tuple[str, ...]] = ()  # names of the parts `loss` returns, in order

    def __init__(self, feature_dim: int, obs_shape: tuple[int, ...], obs_dtype, action: ActionSpec,
                 cfg: AuxiliaryConfig):
        super().__init__(name=self.name)
        self.feature_dim, self.obs_dtype = feature_dim, obs_dtype
        self.obs_shape = obs_shape if isinstance(obs_shape, dict) else tuple(obs_shape)
        self.action, self.cfg = action, cfg

    def modules(self) -> dict[str, list]:
        raise NotImplementedError

    def loss(self, ctx: AuxContext) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        """(scalar loss, named components logged as loss/<name>_<component>)."""
        raise NotImplementedError


def action_features(action: ActionSpec) -> int:
    """Width of `encode_action`'s output."""
    if action.kind == "discrete":
        return action.n
    if action.kind == "box":
        return int(np.prod(action.shape))
    raise UnsupportedSpaceError(f"auxiliary modules support Box and Discrete action spaces, "
                                f"not {action.kind}")


def encode_action(action: ActionSpec, actions: tf.Tensor) -> tf.Tensor:
    """Actions as float features: Box as they are, Discrete one-hot."""
    if action.kind == "discrete":
        return tf.one_hot(tf.cast(actions, tf.int32), action.n)
    return tf.reshape(tf.cast(actions, tf.float32), [tf.shape(actions)[0], action_features(action)])


def auxiliary_class(name: str) -> type[AuxiliaryModule]:
    key = str(name).lower()
    if key not in AUXILIARY:
        raise UnknownNameError(f"unknown auxiliary module '{name}'; available: "
                               f"{', '.join(sorted(AUXILIARY))}." + suggest(key, AUXILIARY))
    module, _, attr = AUXILIARY[key].partition(":")
    return getattr(importlib.import_module(module), attr)


def make_auxiliary(names: list[str], feature_dim: int, obs_shape: tuple[int, ...], obs_dtype,
                   action: ActionSpec, cfg: AuxiliaryConfig) -> dict[str, AuxiliaryModule]:
    """Build the named auxiliary modules, keyed by loss name (in the given order)."""
    out: dict[str, AuxiliaryModule] = {}
    for n in names:
        klass = auxiliary_class(n)
        if klass.name in out:
            raise ConfigError(f"auxiliary module '{n}' is listed twice")
        out[klass.name] = klass(feature_dim, obs_shape, obs_dtype, action, cfg)
    return out


class AuxiliarySet(tf.Module):
    """The auxiliary modules of one agent and what the agent needs from them: their variable
    groups, their losses on a batch, their metric names and their flow contract."""

    def __init__(self, names: list[str], feature_dim: int, obs_shape: tuple[int, ...], obs_dtype,
                 action: ActionSpec, cfg: AuxiliaryConfig):
        super().__init__(name="auxiliary")
        self.members = make_auxiliary(list(names), feature_dim, obs_shape, obs_dtype, action, cfg)

    def __len__(self) -> int:
        return len(self.members)

    def __iter__(self):
        return iter(self.members)

    def items(self):
        return self.members.items()

    def __getitem__(self, name: str) -> AuxiliaryModule:
        return self.members[name]

    @property
    def needs_transitions(self) -> bool:
        return any(m.needs_transitions for m in self.members.values())

    def modules(self) -> dict[str, list]:
        """Every variable group the auxiliary modules own (optimizer and audit columns)."""
        return {k: v for m in self.members.values() for k, v in m.modules().items()}

    def terms(self, trains_encoder: bool, weights: Mapping[str, float],
              encoder: str = "encoder") -> list:
        """One LossTerm per module, reading outputs["aux_context"] (an AuxContext): its flow
        contract is the module's own networks, plus the shared encoder if allowed."""
        out = []
        for name, m in self.members.items():
            mods = set(m.modules()) | ({encoder} if trains_encoder else set())
            out.append(LossTerm(name, lambda b, o, m=m: m.loss(o["aux_context"]),
                                float(weights.get(name, 1.0)), trains=mods, may=mods,
                                needs_transitions=m.needs_transitions,
                                description=f"auxiliary: {type(m).__name__}"))
        return out
