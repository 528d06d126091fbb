"""Moved to rl_sever.config.spaces: this path warns and goes in the next release."""

from rl_sever.config.moved import shim

shim(__name__, "rl_sever.config.spaces")
