"""LossTerm and Objective: named, weighted, contract-carrying loss terms that compose with
``+`` and scalar ``*`` (docs/custom_losses.md, "A term"; forward outputs: objective.outputs):

    objective = ppo_clip(clip) + 0.5 * value_mse() + 0.01 * entropy_bonus() + 0.1 * my_term
"""

from __future__ import annotations

import copy
import inspect
import numbers
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import tensorflow as tf

from rl_sever.audit import Flow
from rl_sever.config.loss_spec import parse_spec
from rl_sever.config.paths import import_path
from rl_sever.errors import ConfigError, suggest

Modules = Iterable[str] | Callable[[Any], Iterable[str]]
_SAME = object()  # metric_namespace default: the term's name


def _module_set(value: Modules | None, agent: Any) -> frozenset[str]:
    if value is None:
        return frozenset()
    if callable(value):
        value = value(agent)
    return frozenset([value] if isinstance(value, str) else value)  # trains="actor": {"actor"}


class LossTerm:
    """One named loss term. Subclass and override `compute` (and `build` for extra networks,
    `on_update` for Python-side adaptation), or wrap a function with `@loss_term(...)`.

    name: the term's name: its weight, its audit row, its TensorBoard key loss/<name>.
    fn: ``fn(batch, out)`` returning a scalar tensor, or ``(scalar, {metric: tensor})``.
    weight: initial weight (None: unspecified, i.e. 1.0 when added and the replaced term's
        weight when it replaces one).
    trains / may: the flow contract: module names (or ``agent -> names``) this term must /
        may send gradient into; ``may`` defaults to ``trains``.
    schedule: weight schedule over the run (rl_sever.config.schedules: constant or linear to zero).
    metric_namespace: metrics are logged as loss/<namespace>_<metric>; None logs them bare.
    needs_transitions: the term reads batch["rewards"] / batch["next_obs"] (one-step).
    """

    def __init__(self, name: str, fn: Callable | None = None, weight: float | None = None, *,
                 trains: Modules = (), may: Modules | None = None, schedule: str = "constant",
                 metric_namespace: Any = _SAME, needs_transitions: bool = False,
                 description: str = ""):
        if not isinstance(name, str) or not name.isidentifier():
            raise ConfigError(f"loss term name must be an identifier, got {name!r}")
        self.name = name
        self.fn = fn
        self.weight_given = weight is not None
        self.initial_weight = float(weight) if weight is not None else 1.0
        self.weight = tf.Variable(self.initial_weight, trainable=False, name=f"w_{name}")
        self.trains, self.may = trains, may
        self.schedule = schedule
        self._namespace = metric_namespace
        self.needs_transitions = needs_transitions
        self.description = description or ((fn.__doc__ or "").strip().split("\n")[0] if fn else "")

    # -- what subclasses override ------------------------------------------------------------
    def compute(self, batch: Mapping[str, tf.Tensor], out: Mapping[str, Any]):
        """The term's value on one minibatch: a scalar, or (scalar, {metric: tensor})."""
        if self.fn is None:
            raise NotImplementedError(f"loss term '{self.name}' has no fn and does not override compute")
        return self.fn(batch, out)

    def build(self, agent: Any) -> dict[str, list[tf.Variable]]:
        """Create the term's own networks for `agent`; return them as named modules (trained
        by the agent's optimizer with this term, and columns of the gradient-flow audit)."""
        return {}

    def state(self) -> dict[str, tf.Variable]:
        """Extra variables of the term to checkpoint (e.g. an adaptive coefficient)."""
        return {}

    def on_update(self, agent: Any, stats: Mapping[str, float]) -> None:
        """Called in plain Python after every update with this term's mean value ("value") and
        metrics: adapt tf.Variables here (e.g. a KL coefficient); nothing retraces."""

    # -- contract -----------------------------------------------------------------------------
    @property
    def metric_namespace(self) -> str | None:
        return self.name if self._namespace is _SAME else self._namespace

    def metric_key(self, metric: str) -> str:
        ns = self.metric_namespace
        return f"{ns}_{metric}" if ns else metric

    def flow(self, agent: Any):
        trains = _module_set(self.trains, agent)
        may = _module_set(self.may, agent) | trains  # may=None: just trains
        return Flow(must=trains, may=may)

    # -- copies and arithmetic -----------------------------------------------------------------
    def copy(self, *, name: str | None = None, weight: float | None = None) -> LossTerm:
        """A shallow copy with its own weight variable (and optionally a new name/weight)."""
        new = copy.copy(self)
        if name is not None:
            if new._namespace is _SAME:
                new._namespace = self.name  # its metrics keep their keys after a rename
            new.name = name
        if weight is not None:
            new.weight_given, new.initial_weight = True, float(weight)
        new.weight = tf.Variable(new.initial_weight, trainable=False, name=f"w_{new.name}")
        return new

    def __mul__(self, k: Any) -> LossTerm:
        if not isinstance(k, numbers.Real) or isinstance(k, bool):
            return NotImplemented
        return self.copy(weight=self.initial_weight * float(k))

    __rmul__ = __mul__

    def __add__(self, other: Any) -> Objective:
        return Objective([self]) + other

    def __radd__(self, other: Any) -> Objective:
        return Objective([self]) if other == 0 else NotImplemented  # sum([...]) starts from 0

    def __repr__(self) -> str:
        w = f"{self.initial_weight:g}" if self.weight_given else "unset"
        return f"LossTerm({self.name!r}, weight={w})"


def loss_term(fn: Callable | None = None, *, name: str | None = None, weight: float | None = None,
              trains: Modules = (), may: Modules | None = None, schedule: str = "constant",
              metric_namespace: Any = _SAME, needs_transitions: bool = False):
    """Decorator turning ``fn(batch, out)`` into a LossTerm (named after the function):

        @loss_term(trains={"critic"})
        def huber_value(batch, out): ...
    """
    def wrap(f: Callable) -> LossTerm:
        return LossTerm(name or f.__name__, f, weight, trains=trains, may=may, schedule=schedule,
                        metric_namespace=metric_namespace, needs_transitions=needs_transitions)

    return wrap(fn) if fn is not None else wrap


class Objective:
    """Ordered, named loss terms; the update minimises sum(weight_i * term_i).

    `+` and scalar `*` build new objectives. The edit methods (add, remove, replace,
    set_weight, apply) change this one in place; on an agent's objective (`agent.objective`)
    a structural edit (add / remove / replace) rebuilds the compiled update and is allowed
    only before the first update, while a weight change is a variable assignment that takes
    effect at the next update, any time, without retracing.
    """

    def __init__(self, terms: Iterable[LossTerm] = ()):
        self._terms: dict[str, LossTerm] = {}
        self._listener: Callable[[str], None] | None = None
        for t in terms:
            self._insert(t)

    def _insert(self, term: LossTerm) -> None:
        if not isinstance(term, LossTerm):
            raise ConfigError(f"an objective holds LossTerm objects, got {term!r}")
        if term.name in self._terms:
            raise ConfigError(f"the objective already has a term '{term.name}'; use replace "
                              f"to swap it, or give the new term another name")
        self._terms[term.name] = term

    def _notify(self, kind: str) -> None:
        if self._listener is not None:
            self._listener(kind)

    # -- mapping view ---------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return list(self._terms)

    def __iter__(self) -> Iterator[LossTerm]:
        return iter(list(self._terms.values()))

    def __len__(self) -> int:
        return len(self._terms)

    def __contains__(self, name: object) -> bool:
        return name in self._terms

    def __getitem__(self, name: str) -> LossTerm:
        return self._require(name)

    def weights(self) -> dict[str, float]:
        return {n: float(t.weight.numpy()) for n, t in self._terms.items()}

    @property
    def needs_transitions(self) -> bool:
        return any(t.needs_transitions for t in self._terms.values())

    def _require(self, name: str) -> LossTerm:
        if name not in self._terms:
            raise ConfigError(f"no loss term '{name}' in the objective (terms: "
                              f"{', '.join(self._terms) or 'none'})." + suggest(name, self._terms))
        return self._terms[name]

    # -- arithmetic -------------------------------------------------------------------------------
    def __add__(self, other: Any) -> Objective:
        if not isinstance(other, (LossTerm, Objective)):
            return NotImplemented
        return Objective([*self, *([other] if isinstance(other, LossTerm) else other)])

    def __radd__(self, other: Any) -> Objective:
        return Objective(list(self)) if other == 0 else NotImplemented

    def __mul__(self, k: Any) -> Objective:
        if not isinstance(k, numbers.Real) or isinstance(k, bool):
            return NotImplemented
        return Objective([t * k for t in self])

    __rmul__ = __mul__

    # -- edits (in place) -----------------------------------------------------------------------
    def add(self, term: LossTerm, weight: float | None = None) -> LossTerm:
        """Append `term` (weight: `weight`, else the term's own, else 1.0)."""
        self._notify("check")
        if weight is not None:
            term = term.copy(weight=weight)
        self._insert(term)
        self._notify("structure")
        return term

    def remove(self, name: str) -> LossTerm:
        self._require(name)
        self._notify("check")
        term = self._terms.pop(name)
        self._notify("structure")
        return term

    def replace(self, name: str, term: LossTerm, weight: float | None = None) -> LossTerm:
        """Put `term` in the place of term `name`, under that name (so its log keys stay).
        Weight: `weight`, else the new term's own if it set one, else the replaced term's."""
        old = self._require(name)
        self._notify("check")
        if weight is None and not term.weight_given:
            weight = float(old.weight.numpy())
        new = term.copy(name=name, weight=weight) if (term.name != name or weight is not None) else term
        self._terms = {k: (new if k == name else v) for k, v in self._terms.items()}
        self._notify("structure")
        return new

    def set_weight(self, name: str, weight: float, schedule: str | None = None) -> None:
        """Assign a term's weight (and optionally its schedule); no retrace."""
        term = self._require(name)
        term.initial_weight, term.weight_given = float(weight), True
        term.weight.assign(float(weight))
        if schedule is not None:
            term.schedule = schedule
        self._notify("weights")

    def apply(self, edit: Any) -> None:
        """Apply an edit: a spec string (see rl_sever.config.loss_spec), a LossTerm (added) or
        an Objective (each of its terms added)."""
        if isinstance(edit, str):
            apply_spec(self, edit)
        elif isinstance(edit, LossTerm):
            self.add(edit)
        elif isinstance(edit, Objective):
            for t in edit:
                self.add(t)
        else:
            raise ConfigError(f"a loss edit is a spec string, a LossTerm or an Objective, got {edit!r}")

    def __repr__(self) -> str:
        return " + ".join(f"{float(t.weight.numpy()):g} * {t.name}" for t in self) or "Objective()"


def load_term(path: str):
    """Import PKG.MOD and return a fresh LossTerm from its attribute ATTR."""
    obj = import_path(path, f"loss '{path}'")
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
                              "declare it as a term with @rl_sever.objective.loss_term(trains={...}) so it "
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
