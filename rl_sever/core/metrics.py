"""The one metric format of every compiled update, for both families and both execution paths.

A compiled update returns a dict from raw keys (each loss term's name, the metric keys its terms
return, and the agent's own keys such as loss, grad_norm or ent_coef) to float32 [sum, count]
pairs. A gradient step that does not compute a key (TD3's delayed actor) adds count 0; a
collector that ran several updates adds their dicts; `Agent.logged_metrics` divides and gives
each key its TensorBoard name (rl_sever.objective.binding.log_metrics).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import tensorflow as tf


def tally(values: Mapping[str, tf.Tensor], count=1.0) -> dict[str, tf.Tensor]:
    """{key: [value * count, count]}: `count` steps' worth of each (mean) value."""
    count = tf.cast(count, tf.float32)
    return {k: tf.stack([tf.cast(v, tf.float32) * count, count]) for k, v in values.items()}


def skipped(keys: Iterable[str]) -> dict[str, tf.Tensor]:
    """The keys with count 0: computed by no step (adds nothing)."""
    return {k: tf.zeros([2]) for k in keys}


def add(a, b):
    """The sum of two raw metric dicts (tensors or arrays); None is the empty sum."""
    if a is None or b is None:
        return b if a is None else a
    return {k: a[k] + b[k] for k in a}


def means(raw: Mapping) -> dict[str, float]:
    """{key: sum / count} for every key some step computed."""
    pairs = {k: np.asarray(v, np.float64) for k, v in raw.items()}
    return {k: float(v[0] / v[1]) for k, v in pairs.items() if v[1] > 0}


def ran(raw: Mapping) -> bool:
    """Whether any step of these updates computed anything (an update ran)."""
    return any(float(np.asarray(v)[1]) > 0 for v in raw.values())
