"""Users' code named by path, `my_pkg.my_module:attr` (loss terms, algorithm pages), and which
modules are rl_sever's own rather than a user's."""

from __future__ import annotations

import importlib

from rl_sever.errors import ConfigError, suggest

SHIPPED_PACKAGES = ("rl_sever.", "agents.")


def is_shipped_module(module: str) -> bool:
    """Whether the module named `module` is rl_sever's own (its package or its agents' pages)."""
    return module.startswith(SHIPPED_PACKAGES)


def import_path(path: str, what: str):
    """The object at `path`; a ConfigError naming `what` (e.g. "loss 'x:y'") if it is not there."""
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        raise ConfigError(f"{what}: cannot import module '{module_name}' ({e}); is its package "
                          "on sys.path (run from the folder that holds it, or pip install it)?"
                          ) from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            public = [n for n in dir(obj) if not n.startswith("_")]
            raise ConfigError(f"{what}: module '{module_name}' has no attribute '{attr}'."
                              + suggest(part, public))
        obj = getattr(obj, part)
    return obj
