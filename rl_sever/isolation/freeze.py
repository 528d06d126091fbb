"""Freezing: a module's variables receive no update at all, whatever the losses say.

Targets are `(ModuleOptimizer, name)` pairs (the run-time flag `ModuleOptimizer.frozen[name]`) or
plain Keras layers (`trainable`, Python state). Caveats and audit: docs/isolation.md.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple, Protocol, runtime_checkable

import keras
import tensorflow as tf

from rl_sever.errors import ConfigError, suggest


@runtime_checkable
class Freezable(Protocol):
    """What freezing needs of an optimizer: named modules, each with a boolean tf.Variable
    that skips its update (rl_sever.core.optim.ModuleOptimizer is the one agents use)."""

    module_names: list[str]
    frozen: dict[str, tf.Variable]


class ModuleRef(NamedTuple):
    """A named module of a ModuleOptimizer; a plain `(optimizer, name)` tuple works the same."""

    optimizer: Freezable
    module: str


FreezeTarget = ModuleRef | tuple[Freezable, str] | keras.layers.Layer


def freeze_flag(target: ModuleRef | tuple[Freezable, str]) -> tf.Variable:
    """The boolean tf.Variable that freezes a module (for reading it inside a compiled step)."""
    if not (isinstance(target, tuple) and len(target) == 2):
        raise TypeError(f"expected (ModuleOptimizer, module_name), got {target!r}")
    opt, name = target
    if not isinstance(opt, Freezable):
        raise TypeError(f"expected a ModuleOptimizer first, got {type(opt).__name__}")
    if name not in opt.frozen:
        raise ConfigError(f"unknown module '{name}'; modules are {opt.module_names}."
                          + suggest(str(name), opt.module_names))
    return opt.frozen[name]


def _set(target: FreezeTarget, value: bool) -> None:
    if isinstance(target, keras.layers.Layer):
        if tf.inside_function():
            # A Python attribute write would happen once at trace time, then never again.
            raise RuntimeError("freezing a Keras layer inside tf.function has no run-time "
                               "effect; freeze a ModuleOptimizer module instead")
        target.trainable = not value
    else:
        freeze_flag(target).assign(value)


def freeze(target: FreezeTarget) -> None:
    """Stop all updates of `target` (a `(ModuleOptimizer, name)` pair or a Keras layer)."""
    _set(target, True)


def unfreeze(target: FreezeTarget) -> None:
    """Resume updates of `target`."""
    _set(target, False)


def is_frozen(target: FreezeTarget) -> bool:
    """Whether `target` is frozen (eager only; in a compiled step read `freeze_flag(target)`)."""
    if isinstance(target, keras.layers.Layer):
        return not target.trainable
    if tf.inside_function():
        raise RuntimeError("is_frozen is eager-only; read freeze_flag(target) in a compiled step")
    return bool(freeze_flag(target).numpy())


@contextlib.contextmanager
def frozen(target: FreezeTarget) -> Iterator[None]:
    """Freeze `target` inside the block; restore its previous state on exit. A
    `(ModuleOptimizer, name)` target's flag is read as a tensor, eagerly or inside a
    tf.function alike, so each call of a compiled step restores the flag it found, not the one
    at trace time. A graph has no `finally`: an op failing at run time inside the block before
    the flag's last use there (an optimizer step's numerics check) leaves the flag set; a
    caller that catches the error restores it."""
    if isinstance(target, keras.layers.Layer):
        before = is_frozen(target)
        freeze(target)  # raises inside a tf.function (no run-time effect)
        try:
            yield
        finally:
            _set(target, before)
        return
    flag = freeze_flag(target)
    before = flag.read_value()  # ordered before the assignments: the same variable
    flag.assign(True)
    try:
        yield
    finally:
        flag.assign(before)


_SPEC_KEYS = ("from_step", "until_step")


def _step(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{where} must be a non-negative integer env step, got {value!r}")
    return value


class FreezeSchedule:
    """Freezes named modules during a window of environment steps.

    Config form (JSON/YAML), module name -> window, both bounds optional:

        {"encoder": {"until_step": 10000}}       # frozen for steps [0, 10000), then trained
        {"critic": {"from_step": 50000}}          # trained, then frozen from step 50000 on
        {"encoder": {}}                           # frozen for the whole run

    A module is frozen while from_step <= env_step < until_step (from_step defaults to 0,
    until_step to never).
    """

    def __init__(self, windows: Mapping[str, tuple[int, int | None]] | None = None):
        self.windows: dict[str, tuple[int, int | None]] = dict(windows or {})

    @classmethod
    def from_config(cls, config: Mapping[str, Mapping[str, int]] | None) -> FreezeSchedule:
        """Parse and validate the config form; raises ConfigError on bad input."""
        if config is None:
            return cls()
        if not isinstance(config, Mapping):
            raise ConfigError("freeze schedule must map module names to windows, got "
                              f"{type(config).__name__}")
        windows = {}
        for module, spec in config.items():
            where = f"freeze schedule '{module}'"
            if not isinstance(module, str) or not module:
                raise ConfigError(f"freeze schedule keys must be module names, got {module!r}")
            if not isinstance(spec, Mapping):
                raise ConfigError(f"{where} must be a mapping like {{'until_step': 10000}}, "
                                  f"got {spec!r}")
            for key in spec:
                if key not in _SPEC_KEYS:
                    raise ConfigError(f"{where}: unknown key '{key}'; use {list(_SPEC_KEYS)}."
                                      + suggest(str(key), _SPEC_KEYS))
            start = _step(spec.get("from_step"), f"{where}.from_step") or 0
            end = _step(spec.get("until_step"), f"{where}.until_step")
            if end is not None and end <= start:
                raise ConfigError(f"{where}: until_step ({end}) must exceed from_step ({start})")
            windows[module] = (start, end)
        return cls(windows)

    def to_config(self) -> dict[str, dict[str, int]]:
        """The JSON-ready config form (round-trips through from_config)."""
        out = {}
        for module, (start, end) in self.windows.items():
            out[module] = {"from_step": start} if start else {}
            if end is not None:
                out[module]["until_step"] = end
        return out

    def frozen_at(self, env_step: int) -> dict[str, bool]:
        """Which scheduled modules are frozen at `env_step`."""
        step = int(env_step)
        return {m: start <= step and (end is None or step < end)
                for m, (start, end) in self.windows.items()}

    def validate(self, module_optimizer: Freezable) -> None:
        """Fail early if the schedule names a module the optimizer does not have."""
        for module in self.windows:
            freeze_flag((module_optimizer, module))

    def apply(self, module_optimizer: Freezable, env_step: int) -> dict[str, bool]:
        """Set the frozen flags for `env_step`; return the modules whose flag changed.

        Call once per iteration from plain Python (the trainer); the compiled step only reads
        the flags, so it is never retraced.
        """
        changed = {}
        for module, want in self.frozen_at(env_step).items():
            flag = freeze_flag((module_optimizer, module))
            if bool(flag.numpy()) != want:
                flag.assign(want)
                changed[module] = want
        return changed

    def __repr__(self) -> str:
        return f"FreezeSchedule({self.to_config()!r})"
