"""Keep TensorFlow's native start-up chatter (oneDNN, CUDA probing) off the console.

TensorFlow's C++ logging prints these lines before absl logging is initialised, so
TF_CPP_MIN_LOG_LEVEL cannot silence them. The CLI imports TensorFlow and probes devices with
file descriptor 2 pointed at /dev/null; Python errors raised meanwhile are still shown, because
they are printed after the descriptor is restored.
"""

from __future__ import annotations

import os

from envs.quiet import native_stderr_silenced


def import_tensorflow_quietly() -> None:
    """Import TensorFlow and initialise its devices without native log lines."""
    with native_stderr_silenced():
        import tensorflow as tf

        tf.config.list_physical_devices()
        # A multi-worker process (TF_CONFIG set) must configure collectives before the first
        # op (rl_sever.core.distribute), so it keeps oneDNN's notes.
        if not os.environ.get("TF_CONFIG"):
            tf.constant(0) + 1  # first kernel launch: oneDNN's one-time notes
            # First graph with an int32 transpose (the categorical sampler has one): oneDNN's
            # one-time "supports DT_INT32 only on platforms with AVX-512" line, printed as an
            # error although nothing is wrong.
            tf.function(tf.transpose)(tf.constant([[0, 1]]))  # 1x1 would be optimised away
