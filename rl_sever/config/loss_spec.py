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

from dataclasses import dataclass

from rl_sever.config.schedules import schedule_value
from rl_sever.errors import ConfigError


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
