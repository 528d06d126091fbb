"""What an agent needs to run an Objective: the terms' own networks, a probe of their outputs,
weight schedules, TensorBoard keys and the Python-side hooks. Shared by the agent families."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from rl_sever.config.schedules import Scheduled
from rl_sever.errors import ConfigError
from rl_sever.objective.term import LossTerm

# The one map from default term names to Stable-Baselines3's TensorBoard keys, for every
# algorithm; every term, these included, is also logged as loss/<name>.
SB3_NAMES = {"policy": "train/policy_gradient_loss", "value": "train/value_loss",
             "entropy": "train/entropy_loss", "critic": "train/critic_loss",
             "actor": "train/actor_loss", "alpha": "train/ent_coef_loss"}


def build_term_modules(agent: Any, objective, taken: Mapping[str, list],
                       built: dict[int, tuple[Any, dict]]) -> dict[str, list]:
    """Build each term's networks once per agent (`built` caches by term identity) and return
    every term-owned module; a name clashing with an agent module is a ConfigError."""
    out: dict[str, list] = {}
    for term in objective:
        if id(term) not in built:
            built[id(term)] = (term, dict(term.build(agent) or {}))
        for name, variables in built[id(term)][1].items():
            if name in taken or name in out:
                raise ConfigError(f"loss term '{term.name}' names its module '{name}', which "
                                  f"already exists (modules: {', '.join([*taken, *out])})")
            out[name] = list(variables)
    return out


def term_trackables(objective, built: Mapping[int, tuple[Any, dict]]) -> dict[str, dict]:
    """What a checkpoint holds of the terms: each term's own networks and its state variables."""
    return {t.name: {"modules": built[id(t)][1], **t.state()}
            for t in objective if built[id(t)][1] or t.state()}


@contextlib.contextmanager
def rng_kept(agent: Any) -> Iterator[None]:
    """Run eager checks without consuming the agent's random stream (runs stay reproducible)."""
    count = int(agent.seed_counter.numpy())
    try:
        yield
    finally:
        agent.seed_counter.assign(count)


def metric_names(term, metrics: Mapping[str, Any]) -> list[str]:
    """The names of a term's metrics: the keys it returned, without the term's namespace."""
    ns = term.metric_key("")
    return [k[len(ns):] if ns and k.startswith(ns) else k for k in metrics]


def metric_keys(objective, term_metrics: Mapping[str, list[str]]) -> list[str]:
    return [objective[n].metric_key(m) for n in objective.names for m in term_metrics.get(n, [])]


def weight_schedules(objective) -> dict[str, Scheduled]:
    """Scheduled weight variables of the terms with a non-constant schedule (key w_<name>)."""
    return {f"w_{t.name}": Scheduled(t.weight, t.schedule, t.initial_weight)
            for t in objective if t.schedule != "constant"}


def log_metrics(objective, term_metrics: Mapping[str, list[str]], out: Mapping[str, float],
                train_keys: list[str]) -> dict[str, float]:
    """The TensorBoard names of an update's mean metrics `out`, for every algorithm: loss/<term>
    for every term (and SB3's name for the default ones); term metrics as loss/<key>; the keys in
    `train_keys` (the agent's own: grad_norm, approx_kl, ent_coef, ...) as train/<key>."""
    logged: dict[str, float] = {}
    for name in objective.names:
        if name in out:  # a step may skip a term (TD3's delayed actor)
            logged[f"loss/{name}"] = out[name]
            if name in SB3_NAMES:
                logged[SB3_NAMES[name]] = out[name]
    for key in metric_keys(objective, term_metrics):
        if key in out:
            logged[f"train/{key}" if key in train_keys else f"loss/{key}"] = out[key]
    logged.update({f"train/{k}": out[k] for k in train_keys if k in out})
    return logged


def run_hooks(agent: Any, objective, term_metrics: Mapping[str, list[str]],
              out: Mapping[str, float]) -> None:
    """Call each term's `on_update` (plain Python, between compiled updates) with its value and
    metrics, when the update computed the term."""
    for term in objective:
        if type(term).on_update is LossTerm.on_update or term.name not in out:
            continue
        stats = {"value": out[term.name],
                 **{m: out[term.metric_key(m)] for m in term_metrics.get(term.name, [])}}
        term.on_update(agent, stats)


def guard_structure(updated: Callable[[], bool], what: str) -> None:
    if updated():
        raise ConfigError(f"{what}: the objective's terms can only be added, removed or replaced "
                          "before the first update (the optimizer and the compiled step are "
                          "built for them); weights can change any time (set_weight, or 0 to "
                          "switch a term off)")
