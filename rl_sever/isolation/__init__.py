"""Gradient-isolation helpers: every place gradient must not flow goes through here.

See docs/isolation.md for what each technique blocks and how it shows up in the audit matrix.
"""

from rl_sever.isolation.edges import EdgeCut, as_functional, find_operation, sever_edge
from rl_sever.isolation.freeze import (
    FreezeSchedule,
    FreezeTarget,
    ModuleRef,
    freeze,
    freeze_flag,
    frozen,
    is_frozen,
    unfreeze,
)
from rl_sever.isolation.gate import Gate
from rl_sever.isolation.masks import ActivationMask, GradientMask, MaskedConv2D, MaskedDense
from rl_sever.isolation.sever import sever, sever_if
from rl_sever.isolation.taps import Taps, tap_statistics, write_tap_summaries

__all__ = ["ActivationMask", "EdgeCut", "FreezeSchedule", "FreezeTarget", "Gate", "GradientMask",
           "MaskedConv2D", "MaskedDense", "ModuleRef", "Taps", "as_functional", "find_operation",
           "freeze", "freeze_flag", "frozen", "is_frozen", "sever", "sever_edge", "sever_if",
           "tap_statistics", "unfreeze", "write_tap_summaries"]
