"""Moved to rl_sever.config.schedules: this path warns and goes in the next release."""

from rl_sever.config.moved import shim

shim(__name__, "rl_sever.config.schedules")
