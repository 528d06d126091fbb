"""Import paths that moved: the old module stays one release as a shim that warns."""

from __future__ import annotations

import importlib
import sys
import warnings


def shim(old: str, new: str) -> None:
    """Make module `old` (being imported) re-export `new`'s public names, with a warning."""
    warnings.warn(f"{old} moved to {new}; import it from there ({old} goes in the next release)",
                  DeprecationWarning, stacklevel=3)
    target, module = importlib.import_module(new), sys.modules[old]
    names = getattr(target, "__all__", [n for n in vars(target) if not n.startswith("_")])
    for name in names:
        setattr(module, name, getattr(target, name))
