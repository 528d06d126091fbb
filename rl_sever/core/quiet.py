"""Keep TensorFlow's native start-up chatter (oneDNN, CUDA probing) off the console.

TensorFlow's C++ logging prints these lines before absl logging is initialised, so
TF_CPP_MIN_LOG_LEVEL cannot silence them. The CLI imports TensorFlow and probes devices with
file descriptor 2 pointed at /dev/null; Python errors raised meanwhile are still shown, because
they are printed after the descriptor is restored.
"""

from __future__ import annotations

import os

from envs.quiet import native_stderr_silenced
from rl_sever.core.lazy_imports import defer_plotting_imports

_warm_up_pending = False


def import_tensorflow_quietly() -> None:
    """Import TensorFlow and probe its devices without native log lines. The first ops, whose
    notes oneDNN prints once, run later in `warm_up_quietly`: an agent calls it once it has set
    TensorFlow's thread pools (rl_sever.core.threads), which the first op fixes."""
    global _warm_up_pending
    defer_plotting_imports()  # what Keras loads for plots, on first use (about 0.4 s)
    with native_stderr_silenced():
        import tensorflow as tf

        tf.config.list_physical_devices()
    _warm_up_pending = True


def warm_up_quietly() -> None:
    """Run TensorFlow's first kernels with native stderr silenced, once, if
    `import_tensorflow_quietly` asked for it (the CLI); a no-op otherwise."""
    global _warm_up_pending
    if not _warm_up_pending:
        return
    _warm_up_pending = False
    with native_stderr_silenced():
        import tensorflow as tf

        # A multi-worker process (TF_CONFIG set) must configure collectives before the first
        # op (rl_sever.core.distribute), so it keeps oneDNN's notes.
        if not os.environ.get("TF_CONFIG"):
            tf.constant(0) + 1  # first kernel launch: oneDNN's one-time notes
            # First graph with an int32 transpose (the categorical sampler has one): oneDNN's
            # one-time "supports DT_INT32 only on platforms with AVX-512" line, printed as an
            # error although nothing is wrong.
            tf.function(tf.transpose)(tf.constant([[0, 1]]))  # 1x1 would be optimised away
