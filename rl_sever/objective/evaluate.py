"""Evaluating a term: its value and metrics, with clear errors for bad return values."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import numpy as np
import tensorflow as tf

from rl_sever.config.paths import is_shipped_module
from rl_sever.errors import ConfigError, RLSeverError
from rl_sever.objective.term import LossTerm


def evaluate_term(term, batch: Mapping[str, tf.Tensor], out: Mapping[str, Any]
                  ) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
    """(scalar float32 value, {metric key: scalar}) of `term`; ConfigError naming the term if it
    does not return a float scalar (optionally with a dict of scalar metrics)."""
    compute = term.compute if is_builtin(term) else _with_autograph(term)
    try:
        result = compute(batch, out)
    except RLSeverError as e:
        raise ConfigError(f"loss term '{term.name}': {e}") from None
    metrics: Mapping[str, Any] = {}
    if isinstance(result, tuple):
        if len(result) != 2 or not isinstance(result[1], Mapping):
            raise ConfigError(f"loss term '{term.name}' must return a scalar or (scalar, dict of "
                              f"metrics), got a tuple of {len(result)}")
        result, metrics = result
    value = _scalar(term.name, "value", result)
    return value, {term.metric_key(k): _scalar(term.name, f"metric '{k}'", v)
                   for k, v in metrics.items()}


def _with_autograph(term):
    """The term's compute with AutoGraph. The update steps are traced without it
    (rl_sever.core.compiled.plain_graph); a user's term keeps it, so Python `if`/`for` on tensors
    work in it as in any tf.function."""
    try:
        if type(term).compute is LossTerm.compute and inspect.isfunction(term.fn):
            return tf.autograph.to_graph(term.fn)
        if inspect.isfunction(type(term).compute):
            converted = tf.autograph.to_graph(type(term).compute)
            return lambda batch, out: converted(term, batch, out)
    except Exception:  # noqa: BLE001 - AutoGraph cannot read every callable; run it as written
        pass
    return term.compute


def is_builtin(term) -> bool:
    """A term defined by rl_sever itself (its class and its fn, if any)."""
    fn = getattr(term, "fn", None)
    mods = [type(term).__module__] + ([getattr(fn, "__module__", "") or ""] if fn else [])
    return all(is_shipped_module(m) for m in mods)


def _scalar(name: str, what: str, x: Any) -> tf.Tensor:
    if x is None or isinstance(x, (str, bytes, Mapping)):
        raise ConfigError(f"loss term '{name}' returned {type(x).__name__} as its {what}; "
                          "expected a scalar tensor")
    try:
        t = tf.convert_to_tensor(x)
    except (TypeError, ValueError):
        raise ConfigError(f"loss term '{name}' returned {type(x).__name__} as its {what}; "
                          "expected a scalar tensor") from None
    if not (t.dtype.is_floating or t.dtype.is_integer):
        raise ConfigError(f"loss term '{name}' returned a {t.dtype.name} tensor as its {what}; "
                          "expected a float scalar")
    if t.shape.rank != 0:
        raise ConfigError(f"loss term '{name}' returned a tensor of shape {t.shape} as its "
                          f"{what}; expected a scalar (reduce it, e.g. tf.reduce_mean)")
    return tf.cast(t, tf.float32)  # a float32 tensor is returned as it is


def check_finite(values: Mapping[str, tf.Tensor]) -> None:
    """ConfigError naming the first term whose (eager) value is NaN or infinite."""
    for name, v in values.items():
        x = float(np.asarray(v))
        if not np.isfinite(x):
            raise ConfigError(f"loss term '{name}' is not finite ({x}) on the first batch; "
                              "nothing was updated")
