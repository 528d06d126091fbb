"""User-input errors: the CLI prints them without a traceback and exits with their code (2).

They sit here, at the bottom of the dependency order, so that envs needs nothing from the
agent layer; rl_sever.errors re-exports them next to the library's own (checkpoints, flow
contracts).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class RLSeverError(Exception):
    """Base class for errors caused by user input (config, env id, run dir, ...)."""

    exit_code = 2


class ConfigError(RLSeverError, ValueError):
    """A config key or value is invalid."""


class UnknownNameError(RLSeverError, KeyError):
    """An algorithm, environment or registry name does not exist."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class UnsupportedSpaceError(RLSeverError, TypeError):
    """An observation or action space the agent cannot handle."""


def suggest(name: str, candidates: Iterable[str], n: int = 3) -> str:
    """Return ' Did you mean: a, b?' for close matches of `name`, or ''."""
    candidates = list(candidates)
    close = difflib.get_close_matches(name, candidates, n=n, cutoff=0.6)
    if not close:
        lowered = {c.lower(): c for c in candidates}
        close = [lowered[c] for c in difflib.get_close_matches(name.lower(), lowered, n=n, cutoff=0.6)]
    return f" Did you mean: {', '.join(close)}?" if close else ""
