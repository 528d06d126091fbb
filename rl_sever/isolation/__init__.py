"""Gradient-isolation helpers: every place gradient must not flow goes through here."""

from rl_sever.isolation.sever import sever, sever_if

__all__ = ["sever", "sever_if"]
