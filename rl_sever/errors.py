"""User-facing errors: the CLI prints these without a traceback and exits with code 2.

The base class and the errors that environments raise too are defined in envs.errors (envs
does not import rl_sever); this module is the one place the library imports them from.
"""

from __future__ import annotations

from envs.errors import ConfigError, RLSeverError, UnknownNameError, UnsupportedSpaceError, suggest

__all__ = ["CheckpointError", "ClusterError", "ConfigError", "EnvError", "ExportError", "FlowContractError", "RLSeverError",
           "UnknownNameError", "UnsupportedSpaceError", "WriteError", "suggest"]


class CheckpointError(RLSeverError, OSError):
    """A run directory or checkpoint is missing, unreadable or incompatible."""


class FlowContractError(RLSeverError, RuntimeError):
    """A loss sends gradient where its flow contract forbids (or none where it requires)."""


class EnvError(RLSeverError, RuntimeError):
    """An environment gives what its protocol does not allow (e.g. an action mask of the wrong
    shape, or one that allows no action)."""


class ClusterError(RLSeverError, RuntimeError):
    """Ray env runners or learner processes failed in a way the run cannot recover from (a
    runner that keeps dying or cannot start, a learner lost)."""


class ExportError(RLSeverError, RuntimeError):
    """A policy cannot be written in a format (an op its runtime lacks, a missing extra) or
    the written policy does not reproduce the agent's actions."""


class WriteError(RLSeverError, OSError):
    """A run's files could not be written (a full disk, a file-size limit) often enough that
    the run stopped; the message names its newest complete checkpoint and how to resume."""
