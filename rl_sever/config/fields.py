"""Config dataclasses: field docstrings as help, YAML and key=value overrides, validation.

Every agent has one config dataclass. A field's docstring is the string literal written under
it; `field_docs` reads them from the source so the CLI help and the docs never repeat them.
Nested dataclasses (e.g. `network`) are addressed with dotted keys: `network.hidden_sizes`.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import functools
import inspect
import json
import os
import textwrap
import types
import typing
from collections.abc import Iterable, Mapping
from importlib.abc import Traversable
from pathlib import Path
from typing import Any

import yaml

from rl_sever.errors import ConfigError, suggest

# Keys of one family only: the error for the other family's agents says so.
_ON = "It applies to the on-policy agents (ppo, a2c and pages built on OnPolicyAgent) only."
FAMILY_KEYS = {"network.recurrent": _ON, "network.recurrent_size": _ON, "bptt_length": _ON,
               "action_masks": _ON, "host_act": _ON,
               "her": "Hindsight experience replay applies to the off-policy agents (sac, td3, "
                      "ddpg, tqc, crossq and pages built on OffPolicyAgent) only."}


def field_docs(cls: type) -> dict[str, str]:
    """Map each dataclass field of `cls` (and its bases) to the docstring written under it."""
    return dict(_field_docs(cls))  # a copy: the parse is cached


@functools.cache
def _field_docs(cls: type) -> dict[str, str]:
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body
        for node, nxt in zip(body, body[1:]):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                    and isinstance(nxt.value.value, str)):
                docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-serialisable dict of a config dataclass (nested ones included)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def describe_config(cfg: Any, prefix: str = "") -> list[tuple[str, Any, str]]:
    """(dotted key, value, docstring) for every config key, nested sections included."""
    docs = field_docs(type(cfg))
    rows = []
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            rows.extend(describe_config(value, f"{prefix}{f.name}."))
        else:
            rows.append((prefix + f.name, value, docs.get(f.name, "")))
    return rows


def flat_items(cfg: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """(dotted key, value) pairs of a config, nested dataclasses flattened."""
    return [(key, value) for key, value, _ in describe_config(cfg, prefix)]


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Convert `value` to the annotated type `hint`, or raise ConfigError naming `key`."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in [a for a in args if a is not type(None)]:
            try:
                return _coerce(value, arg, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{key}: bad value {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{key}: {value!r} is not one of {list(args)}")
        return value
    if origin in (list, tuple, dict) or hint is dict:
        if isinstance(value, str):
            value = yaml.safe_load(value)
        if origin in (list, tuple):
            if not isinstance(value, (list, tuple)):
                raise ConfigError(f"{key}: expected a list, got {value!r}")
            return [_coerce(v, args[0] if args else Any, key) for v in value]
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if hint is Any:
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on", "false", "no", "0", "off"):
            return value.lower() in ("true", "yes", "1", "on")
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        with contextlib.suppress(ValueError):  # a bool's str ("True") is no number either
            if (f := float(str(value).replace("_", ""))).is_integer():
                return int(f)
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if hint is float:
        with contextlib.suppress(TypeError, ValueError):
            if not isinstance(value, bool):
                return float(value)
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if hint is str:
        if not isinstance(value, (str, int, float)):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return str(value)
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping of {hint.__name__} fields, got {value!r}")
        return update(hint(), value, prefix=f"{key}.")
    return value


def update(cfg: Any, values: Mapping[str, Any], prefix: str = "") -> Any:
    """Return a copy of `cfg` with `values` applied (nested mappings or dotted keys)."""
    hints = typing.get_type_hints(type(cfg))
    names = [f.name for f in dataclasses.fields(cfg)]
    changes: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for raw_key, value in values.items():
        key = str(raw_key).replace("-", "_")
        head, _, rest = key.partition(".")
        if head not in names:
            # Full dotted keys, each once, so a suggestion can be pasted back as it is.
            known = dict.fromkeys(prefix + k for k in [k for k, _ in flat_items(cfg)] + names)
            family = FAMILY_KEYS.get(prefix + head)
            raise ConfigError(f"unknown config key '{prefix}{key}' for {type(cfg).__name__}."
                              + (f" {family}" if family else suggest(prefix + key, known)))
        if rest:
            nested.setdefault(head, {})[rest] = value
        elif dataclasses.is_dataclass(hints[head]) and isinstance(value, Mapping):
            nested.setdefault(head, {}).update(value)
        else:
            changes[head] = _coerce(value, hints[head], prefix + head)
    for head, sub in nested.items():
        changes[head] = update(getattr(cfg, head), sub, prefix=f"{prefix}{head}.")
    new = dataclasses.replace(cfg, **changes)
    if hasattr(new, "validate") and not prefix:
        new.validate()
    return new


def parse_set(pairs: Iterable[str]) -> dict[str, str]:
    """Parse CLI `key=value` strings into a dict (values stay strings; `update` coerces)."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got '{pair}'")
        out[key.strip()] = value.strip()
    return out


def load_yaml(path: str | Path | Traversable, label: str = "config file",
              contents: str = "key: value pairs", encoding: str | None = None) -> dict[str, Any]:
    """Read a YAML mapping of config values, with clear errors for missing or malformed files;
    `label` and `contents` word the errors (presets.find passes "preset", "config keys")."""
    path = Path(path) if isinstance(path, (str, os.PathLike)) else path  # keep a Traversable
    if not path.is_file():
        raise ConfigError(f"{label} not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding=encoding)) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{label} {path} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{label} {path} must hold a mapping of {contents}")
    return data


def check(condition: bool, message: str) -> None:
    """Raise ConfigError(message) unless condition holds (used by config `validate` methods)."""
    if not condition:
        raise ConfigError(message)
