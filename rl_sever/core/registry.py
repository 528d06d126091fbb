"""Algorithm registry: every Agent subclass that declares its own `algo` registers itself.

The shipped pages (the `agents` package) and users' packages are found through the
`rl_sever.algorithms` entry-point group, so nothing here names them; a user's algorithm
can also be named by its class path, `my_module:MyAgent`.
"""

from __future__ import annotations

import warnings
from importlib.metadata import entry_points

from rl_sever.config.paths import import_path, is_shipped_module
from rl_sever.errors import ConfigError, UnknownNameError, suggest

ENTRY_POINT_GROUP = "rl_sever.algorithms"
_REGISTRY: dict[str, type] = {}
_loaded = False


def is_shipped(klass: type) -> bool:
    """Whether `klass` is one of rl_sever's own classes (not a user's)."""
    return is_shipped_module(klass.__module__)


def register(klass: type) -> None:
    """Record `klass` under its `algo` (called by Agent.__init_subclass__)."""
    key = klass.algo.lower()
    known = _REGISTRY.get(key)
    if known is not None and class_path(known) != class_path(klass):
        raise ConfigError(f"algorithm '{key}' is declared twice: by {class_path(known)} and by "
                          f"{class_path(klass)}; give one of them another `algo`")
    _REGISTRY[key] = klass


def class_path(klass: type) -> str:
    return f"{klass.__module__}:{klass.__qualname__}"


def registered() -> dict[str, type]:
    """Name -> class of every registered algorithm (the shipped pages loaded first)."""
    global _loaded
    if not _loaded:
        _loaded = True
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            ep.load()
    return dict(sorted(_REGISTRY.items()))


def algorithm_names() -> list[str]:
    return list(registered())


def get_agent_class(name: str) -> type:
    """The agent class of a registered name (`ppo`) or of a class path (`my_module:MyAgent`)."""
    if ":" in name:
        return load_class_path(name)
    algos, key = registered(), name.lower()
    if key not in algos:
        raise UnknownNameError(f"unknown algorithm '{name}'; available: {', '.join(algos)} "
                               "(or a class path, my_module:MyAgent)." + suggest(key, algos))
    return algos[key]


def load_class_path(path: str) -> type:
    """Import `module:Class` and check that it is an agent class."""
    obj = import_path(path, f"algorithm '{path}'")
    check_agent_class = getattr(obj, "check_page", None)
    if not isinstance(obj, type) or check_agent_class is None:
        raise ConfigError(f"algorithm '{path}' is {type(obj).__name__} {obj!r}, not an agent "
                          "class (a subclass of rl_sever.Agent)")
    check_agent_class()
    return obj


def trained_class(record: dict, run_dir) -> type:
    """The class that trained a run: the registered page of its algo, else its class path."""
    path, known = record.get("agent_class"), registered().get(record["algo"])
    if known is not None and (path is None or class_path(known) == path):
        return known
    if path is None:
        return get_agent_class(record["algo"])
    # Named before it runs: loading someone else's run folder imports the module it names.
    warnings.warn(f"{run_dir} was trained by {path}: importing module "
                  f"'{path.partition(':')[0]}' to rebuild its agent", stacklevel=2)
    try:
        return load_class_path(path)
    except ConfigError as e:
        raise ConfigError(f"{run_dir} was trained by {path}: {e}; import that class and call "
                          "its load(run_dir)") from None
