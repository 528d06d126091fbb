"""Search spaces of `rl-sever tune`: YAML files of config keys (rl_sever/config/search/<algo>.yaml,
the zoo's ranges; `--space FILE` for one's own), sampled through an Optuna trial.

    key: [a, b, c]                       a categorical choice among the values
    key: {low: 1.0e-5, high: 1, log: true}   a float range (int: true for integers)
    key: {tiny: [64], small: [64, 64]}   named choices (Optuna stores the names)
    key: {same_as: other_key}            the value sampled for other_key
    key: 0.99                            a fixed value

Keys are the config's own (dotted for nested ones: network.hidden_sizes); an unknown key is an
error naming the nearest ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rl_sever.config.fields import flat_items, load_yaml
from rl_sever.errors import ConfigError, suggest

SEARCH_DIR = Path(__file__).resolve().parents[2] / "config" / "search"
SHARED = {"tqc": "sac", "crossq": "sac"}  # algorithms tuned in another's space


def default_space_path(algo: str) -> Path:
    path = SEARCH_DIR / f"{SHARED.get(algo, algo)}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in SEARCH_DIR.glob("*.yaml"))
        raise ConfigError(f"rl_sever has no search space for {algo} (it has: {', '.join(known)}); "
                          "pass one with --space FILE (docs/tuning.md)")
    return path


def load_space(algo: str, config: Any, path: str | Path | None = None) -> dict[str, Any]:
    """The search space (key -> spec) for `algo`, checked against `config`'s keys."""
    path = Path(path) if path is not None else default_space_path(algo)
    if not path.is_file():
        raise ConfigError(f"search space file not found: {path}")
    space = load_yaml(path, "search space", "config keys with their ranges") or {}
    if not isinstance(space, dict) or not space:
        raise ConfigError(f"search space {path} names no config key")
    keys = {k for k, _ in flat_items(config)}
    for key, spec in space.items():
        if key not in keys:
            raise ConfigError(f"search space {path}: '{key}' is not a config key of {algo}."
                              + suggest(key, sorted(keys)))
        _check_spec(path, key, spec, space)
    return space


def _check_spec(path: Path, key: str, spec: Any, space: dict) -> None:
    where = f"search space {path}, '{key}'"
    if isinstance(spec, list):
        if not spec:
            raise ConfigError(f"{where}: an empty list of choices")
    elif isinstance(spec, dict):
        if "same_as" in spec:
            if spec["same_as"] not in space or spec["same_as"] == key:
                raise ConfigError(f"{where}: same_as names '{spec['same_as']}', which is not "
                                  "another key of the space")
        elif "low" in spec or "high" in spec:
            extra = set(spec) - {"low", "high", "log", "int"}
            if extra or "low" not in spec or "high" not in spec:
                raise ConfigError(f"{where}: a range is {{low, high[, log, int]}}, got {spec}")
            try:
                low, high = float(spec["low"]), float(spec["high"])
            except (TypeError, ValueError):
                raise ConfigError(f"{where}: low and high must be numbers, got {spec}") from None
            if not low <= high or (spec.get("log") and low <= 0):
                raise ConfigError(f"{where}: needs low <= high (and low > 0 with log), got {spec}")
        elif not spec:
            raise ConfigError(f"{where}: an empty set of named choices")


def sample(trial, space: dict[str, Any]) -> dict[str, Any]:
    """{config key: value} for one trial (Optuna records each choice under the key)."""
    values: dict[str, Any] = {}
    for key, spec in space.items():
        if isinstance(spec, dict) and "same_as" in spec:
            continue
        if isinstance(spec, list):
            values[key] = trial.suggest_categorical(key, spec)
        elif isinstance(spec, dict) and "low" in spec:
            if spec.get("int"):
                values[key] = trial.suggest_int(key, int(spec["low"]), int(spec["high"]),
                                                log=bool(spec.get("log")))
            else:
                values[key] = trial.suggest_float(key, float(spec["low"]), float(spec["high"]),
                                                  log=bool(spec.get("log")))
        elif isinstance(spec, dict):
            values[key] = spec[trial.suggest_categorical(key, list(spec))]
        else:
            values[key] = spec
    for key, spec in space.items():
        if isinstance(spec, dict) and "same_as" in spec:
            values[key] = values[spec["same_as"]]
    return values


def first_values(space: dict[str, Any]) -> dict[str, Any]:
    """Each key's first choice (a range's low end): a configuration to check the base with."""
    values = {}
    for key, spec in space.items():
        if isinstance(spec, list):
            values[key] = spec[0]
        elif isinstance(spec, dict) and "low" in spec:
            values[key] = int(spec["low"]) if spec.get("int") else float(spec["low"])
        elif isinstance(spec, dict) and "same_as" not in spec:
            values[key] = next(iter(spec.values()))
        elif not isinstance(spec, dict):
            values[key] = spec
    for key, spec in space.items():
        if isinstance(spec, dict) and "same_as" in spec:
            values[key] = values[spec["same_as"]]
    return values


def decode(params: dict[str, Any], space: dict[str, Any]) -> dict[str, Any]:
    """Config values of a finished trial's Optuna params (named choices -> their values)."""
    values = {}
    for key, spec in space.items():
        if isinstance(spec, dict) and "same_as" in spec:
            continue
        if key in params:
            value = params[key]
            if isinstance(spec, dict) and "low" not in spec:
                value = spec[value]
            values[key] = value
        elif not isinstance(spec, (list, dict)):
            values[key] = spec
    for key, spec in space.items():
        if isinstance(spec, dict) and "same_as" in spec and spec["same_as"] in values:
            values[key] = values[spec["same_as"]]
    return values


def fit_to_rollout(values: dict[str, Any], base: dict[str, Any], defaults: Any) -> dict[str, Any]:
    """On-policy: a minibatch no larger than the rollout it is cut from (the zoo's rule); the
    rollout's n_steps and n_envs come from `values`, else the flat `base`, else `defaults`."""
    if not hasattr(defaults, "n_steps"):
        return values
    def pick(key):
        return int(values.get(key, base.get(key, getattr(defaults, key))))

    try:
        batch = pick("batch_size") if hasattr(defaults, "batch_size") else 0
        rollout = pick("n_steps") * pick("n_envs")
    except (TypeError, ValueError):  # a bad value: the config's own check names it
        return values
    if batch > rollout:
        values = {**values, "batch_size": rollout}
    return values


def nested(values: dict[str, Any]) -> dict[str, Any]:
    """{"network.hidden_sizes": v} -> {"network": {"hidden_sizes": v}} (a config file's form)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        *parents, last = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return out
