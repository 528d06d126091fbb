"""NaN and inf guards at the boundaries of a run (config key `check_finite`; docs/cli.md).

Env side: actions, observations and rewards (float arrays only) every vector step. Learner
side: every update's losses and gradient norm, by compiled `check_numerics` (not under XLA) and
by the logged means on the host.
"""

from __future__ import annotations

import math
import re
import warnings

import numpy as np

from rl_sever.errors import RLSeverError


class NonFiniteError(RLSeverError):
    """A NaN or inf reached a boundary of the run."""


class FiniteGuard:
    """The env-side checks of one collector."""

    def __init__(self, mode: str = "stop"):
        self.mode = mode
        self._warned: set[str] = set()

    def check(self, what: str, values, step: int) -> None:
        """Raise (stop) or warn (warn) if any sub-env's `values` [n_envs, ...] is not finite;
        `step` is the env step of the vector step being checked."""
        if self.mode == "off":
            return
        if isinstance(values, dict):  # a Dict observation: each key
            for key, part in values.items():
                self.check(f"{what} '{key}'", part, step)
            return
        arr = values if isinstance(values, np.ndarray) else np.asarray(values)
        if arr.dtype.kind not in "fc" or np.isfinite(arr).all():  # ~1 us: the common case
            return
        self._report(what, arr, step)

    def _report(self, what: str, arr: np.ndarray, step: int) -> None:
        flat = arr.reshape(arr.shape[0], -1) if arr.ndim else arr.reshape(1, 1)
        bad = ~np.isfinite(flat).all(axis=1)
        envs = np.flatnonzero(bad)
        value = flat[envs[0]][~np.isfinite(flat[envs[0]])][0]
        where = f"sub-env {envs[0]}" + (f" (and {len(envs) - 1} more)" if len(envs) > 1 else "")
        message = f"non-finite {what} ({value}) from {where} at env step {step:,}"
        if self.mode == "stop":
            raise NonFiniteError(message + "; the run stopped (config check_finite: stop, warn "
                                 "or off)")
        if what not in self._warned:
            self._warned.add(what)
            warnings.warn(message + " (check_finite=warn: the run goes on; warned once)",
                          stacklevel=3)


def check_metrics(logged: dict[str, float], step: int) -> None:
    """NonFiniteError if a logged loss or the gradient norm of the updates is not finite."""
    for key, value in logged.items():
        if ("loss" in key or key.endswith("grad_norm")) and not math.isfinite(value):
            raise NonFiniteError(f"non-finite {key} ({value}) in the updates up to env step "
                                 f"{step:,}; the run stopped")


def from_check_numerics(error: Exception, step: int) -> NonFiniteError | None:
    """The NonFiniteError for TensorFlow's check_numerics failure `error` (else None)."""
    text = str(error)
    if "had NaN values" not in text and "had Inf values" not in text:
        return None
    found = re.search(r"(loss term '[^']+'|\w+ loss|gradient norm)[^\n]*?(NaN|Inf)", text)
    what = f"{found.group(1)} ({found.group(2)})" if found else text.strip().splitlines()[0]
    return NonFiniteError(f"non-finite {what} in an update after env step {step:,}; the run "
                          "stopped")
