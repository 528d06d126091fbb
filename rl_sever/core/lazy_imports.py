"""Modules that TensorFlow's import loads although a run may never use them, loaded on first
use instead (the CLI's processes only).

`import tensorflow` imports Keras, and Keras imports `matplotlib.pyplot` (and
`matplotlib.patches`) at load time for its image-gallery helpers, when matplotlib is installed:
about 0.4 s of every `rl-sever` process (measured with `-X importtime`: 0.46-0.50 s of a 3.0 s
TensorFlow import). `defer_plotting_imports` installs an import finder that gives those modules
a lazy loader (the standard library's `importlib.util.LazyLoader`): the import statement binds a
module object at once, and the module runs on its first attribute access. Nothing changes for
code that uses them (rl_sever's own curves, a user's plots, Keras' helpers); a run that never
plots never pays for them.

Only the CLI's processes call this (rl_sever.core.quiet, before TensorFlow's import: the
`rl-sever` command, and tuning's trial workers), so a user's own process imports as it always
did unless it calls `rl_sever.cli.main` itself. On Python before 3.12 a lazy module's first
use is not guarded against a second thread using it meanwhile; rl_sever plots from one thread.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys

DEFERRED = frozenset({"matplotlib.pyplot", "matplotlib.patches"})


class _LazyFinder(importlib.abc.MetaPathFinder):
    """Finds the `DEFERRED` modules as the path finder does, with a lazy loader."""

    def find_spec(self, name, path, target=None):
        if name not in DEFERRED:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return None  # not installed: the usual ImportError, from the usual finders
        spec.loader = importlib.util.LazyLoader(spec.loader)
        return spec


def defer_plotting_imports() -> bool:
    """Install the finder once, unless a deferred module is already loaded; returns whether
    it is installed."""
    if any(isinstance(f, _LazyFinder) for f in sys.meta_path):
        return True
    if any(name in sys.modules for name in DEFERRED):
        return False
    sys.meta_path.insert(0, _LazyFinder())
    return True
