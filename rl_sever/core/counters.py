"""The agent's checkpointed counters (env steps, iterations, updates) read and written from
Python once per iteration.

`tf.Variable.numpy()` and `assign()` go through the variable's read and assign machinery
(tape recording, an identity op, the assign's result): 91 and 66 µs for an int64 scalar on a
2-core AMD EPYC (Zen 3), against 31 and 43 µs for the one kernel each needs. A2C CartPole
reads the step and writes two counters 2,500 times per 100k steps. A distributed variable
takes the variable's own methods, as `write` does inside compiled code; `read` is for Python.
"""

from __future__ import annotations

import tensorflow as tf


def _plain(var) -> bool:
    return (tf.executing_eagerly() and isinstance(var, tf.Variable)
            and not isinstance(var, tf.distribute.DistributedValues))


def read(var) -> int:
    """The integer value of a scalar counter variable."""
    if _plain(var):
        return int(tf.raw_ops.ReadVariableOp(resource=var.handle, dtype=var.dtype))
    return int(var.numpy())


def write(var, value) -> None:
    """Set a scalar counter variable to `value` (an int; a tensor inside compiled code, as the
    on-policy update call sets the loop's counters)."""
    if _plain(var):
        tf.raw_ops.AssignVariableOp(resource=var.handle, value=tf.constant(value, var.dtype))
    else:
        var.assign(value, read_value=False)
