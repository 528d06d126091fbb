"""Users' code named by path, `my_pkg.my_module:attr` (loss terms, algorithm pages)."""

from __future__ import annotations

import importlib

from rl_sever.errors import ConfigError, suggest


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
