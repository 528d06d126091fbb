"""Loss edits as strings (config `losses:`, CLI `--loss`), and the dotted-path loader.

    -NAME                    remove term NAME                      --loss -entropy
    +PKG.MOD:ATTR[@W]        add the term found at PKG.MOD:ATTR   --loss +my_pkg.losses:l2@0.01
    NAME=PKG.MOD:ATTR[@W]    replace term NAME by it (keeps NAME)  --loss value=my_pkg.losses:huber
    NAME@W                   change term NAME's weight            --loss entropy@0.01

W is a number, optionally followed by a schedule: 0.01:linear anneals the weight linearly to
zero over the run. ATTR is a LossTerm, a LossTerm subclass, or a zero-argument function
returning a LossTerm; each use gets a fresh copy (its own weight variable). Importing the
module named by the path is the only dynamic loading.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass

from rl_sever.errors import ConfigError, suggest
from rl_sever.schedules import schedule_value


@dataclass(frozen=True)
class LossSpec:
    op: str  # "add" | "remove" | "replace" | "weight"
    name: str | None
    path: str | None
    weight: float | None
    schedule: str | None
    text: str


def _weight(text: str, spec: str) -> tuple[float, str | None]:
    value, _, schedule = text.partition(":")
    try:
        w = float(value)
    except ValueError:
        raise ConfigError(f"loss spec '{spec}': weight '{value}' is not a number") from None
    if schedule:
        schedule_value(schedule, w, 0.0)  # validates the schedule's name
    return w, schedule or None


def _check_path(path: str, spec: str) -> None:
    module, sep, attr = path.partition(":")
    if not sep or not module or not attr or not all(p.isidentifier() for p in module.split(".")) \
            or not all(p.isidentifier() for p in attr.split(".")):
        raise ConfigError(f"loss spec '{spec}': expected a dotted path like my_pkg.my_losses:term, "
                          f"got '{path}'")


def _check_name(name: str, spec: str) -> None:
    if not name.isidentifier():
        raise ConfigError(f"loss spec '{spec}': '{name}' is not a term name")


def parse_spec(spec: str) -> LossSpec:
    """Parse one edit string (syntax only: nothing is imported)."""
    text = str(spec).strip()
    if not text:
        raise ConfigError("empty loss spec")
    if text.startswith("-"):
        name = text[1:].strip()
        _check_name(name, text)
        return LossSpec("remove", name, None, None, None, text)
    if text.startswith("+") or "=" in text:
        name, op, body = (None, "add", text[1:]) if text.startswith("+") else (
            text.partition("=")[0].strip(), "replace", text.partition("=")[2])
        if name is not None:
            _check_name(name, text)
        path, at, w = body.strip().rpartition("@")
        if not at:
            path = body.strip()
        _check_path(path, text)
        weight, schedule = _weight(w.strip(), text) if at else (None, None)
        return LossSpec(op, name, path, weight, schedule, text)
    if "@" in text:
        name, _, w = text.partition("@")
        _check_name(name.strip(), text)
        weight, schedule = _weight(w.strip(), text)
        return LossSpec("weight", name.strip(), None, weight, schedule, text)
    raise ConfigError(f"loss spec '{text}': expected -NAME, +PKG.MOD:ATTR[@W], "
                      "NAME=PKG.MOD:ATTR[@W] or NAME@W")


def load_term(path: str):
    """Import PKG.MOD and return a fresh LossTerm from its attribute ATTR."""
    from rl_sever.loss_terms.term import LossTerm

    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        raise ConfigError(f"loss '{path}': cannot import module '{module_name}' ({e}); is its "
                          "package on sys.path (run from the project root, or pip install it)?") from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            public = [n for n in dir(obj) if not n.startswith("_")]
            raise ConfigError(f"loss '{path}': module '{module_name}' has no attribute '{attr}'."
                              + suggest(part, public))
        obj = getattr(obj, part)
    if isinstance(obj, LossTerm):
        return obj.copy()
    if isinstance(obj, type) and issubclass(obj, LossTerm):
        return obj()
    if callable(obj):
        try:
            params = [p for p in inspect.signature(obj).parameters.values()
                      if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        except (TypeError, ValueError):
            params = []
        if params:
            raise ConfigError(f"loss '{path}' is a plain function of ({', '.join(p.name for p in params)}); "
                              "declare it as a term with @rl_sever.loss_terms.loss_term(trains={...}) so it "
                              "has a name, a weight and a flow contract")
        term = obj()
        if isinstance(term, LossTerm):
            return term
        raise ConfigError(f"loss '{path}' returned {type(term).__name__}, not a LossTerm")
    raise ConfigError(f"loss '{path}' is a {type(obj).__name__}, not a LossTerm")


def apply_spec(objective, spec: str) -> None:
    """Apply one edit string to `objective` (in place)."""
    s = parse_spec(spec)
    if s.op == "remove":
        objective.remove(s.name)
    elif s.op == "weight":
        objective.set_weight(s.name, s.weight, s.schedule)
    else:
        if s.op == "replace":
            objective._require(s.name)  # an unknown name fails before anything is imported
        term = load_term(s.path)
        if s.schedule:
            term.schedule = s.schedule
        if s.op == "add":
            objective.add(term, s.weight)
        else:
            objective.replace(s.name, term, s.weight)
