"""Point file descriptor 2 at /dev/null while native libraries print their start-up chatter.

Used by rl_sever.core.quiet (TensorFlow's start-up in the CLI) and by envs.worker_preload (the
worker processes' imports). RL_SEVER_VERBOSE_TF=1 keeps everything.
"""

from __future__ import annotations

import contextlib
import os
import sys


@contextlib.contextmanager
def native_stderr_silenced():
    if os.environ.get("RL_SEVER_VERBOSE_TF"):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
