"""FlowContract: which modules each loss must and may send gradient into."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

from rl_sever.audit.matrix import FLOW, NONE, FlowMatrix, Status
from rl_sever.errors import FlowContractError, UnknownNameError, suggest

Kind = Literal["leak", "missing", "undeclared"]


def _names(value: Iterable[str] | str, what: str) -> frozenset[str]:
    if isinstance(value, str):  # Flow(must="actor") means {"actor"}, not {"a", "c", ...}
        return frozenset([value])
    names = frozenset(value)
    bad = [n for n in names if not isinstance(n, str)]
    if bad:
        raise TypeError(f"Flow.{what} must hold module names (str), got {bad!r}.")
    return names


@dataclass(frozen=True, init=False)
class Flow:
    """Modules one loss MUST reach (non-zero gradient) and MAY reach; all others are forbidden.

    `may` defaults to `must`; `Flow()` declares a loss that must reach no module at all.
    Forbidden modules must be disconnected or receive exactly zero gradient.
    """

    must: frozenset[str]
    may: frozenset[str]

    def __init__(self, must: Iterable[str] | str = (),
                 may: Iterable[str] | str | None = None) -> None:
        must_set = _names(must, "must")
        may_set = must_set if may is None else _names(may, "may")
        if not must_set <= may_set:
            raise ValueError(f"Flow(must={sorted(must_set)}, may={sorted(may_set)}): required "
                             f"modules {sorted(must_set - may_set)} must also be allowed "
                             "(must ⊆ may).")
        object.__setattr__(self, "must", must_set)
        object.__setattr__(self, "may", may_set)

    def __repr__(self) -> str:
        return f"Flow(must={set(self.must) or '{}'}, may={set(self.may) or '{}'})"


@dataclass(frozen=True)
class Violation:
    """One broken promise: a leak into a forbidden module, a required module left
    untrained, or a loss the contract does not declare."""

    loss: str
    module: str | None  # None for 'undeclared'
    kind: Kind
    message: str
    status: Status | None = None  # observed status of (loss, module); None if not audited
    norm: float | None = None
    variables: tuple[tuple[str, float], ...] = ()  # leaking variables with norms, largest first

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (for logs and config.json-style reports)."""
        return {"loss": self.loss, "module": self.module, "kind": self.kind,
                "status": self.status, "norm": self.norm,
                "variables": [list(v) for v in self.variables], "message": self.message}


def _fmt_set(names: Iterable[str]) -> str:
    names = sorted(names)
    return ", ".join(names) if names else "nothing"


def _leak(loss: str, module: str, flow: Flow, matrix: FlowMatrix) -> Violation:
    cell = matrix.cell(loss, module)
    leaking = tuple(cell.flowing())
    width = max(len(n) for n, _ in leaking)
    head = (f"leak: loss {loss!r} sends gradient into module {module!r} (|g| = {cell.norm:.1e}), "
            f"which its contract forbids (may reach: {_fmt_set(flow.may)}). Leaking variables:")
    fix = ("  fix: sever(...) (rl_sever.isolation) the tensor this loss reads from "
           f"{module!r}, or add {module!r} to the loss's `may` set if the flow is intended.")
    lines = [head, *(f"    {n.ljust(width)}  |g| = {g:.1e}" for n, g in leaking), fix]
    return Violation(loss, module, "leak", "\n".join(lines), cell.status, cell.norm, leaking)


def _missing(loss: str, module: str, matrix: FlowMatrix) -> Violation:
    msg = f"missing: loss {loss!r} must train module {module!r}, but "
    if loss not in matrix.losses:
        msg += (f"no loss {loss!r} was audited (audited losses: {_fmt_set(matrix.losses)})."
                f"{suggest(loss, matrix.losses)}")
        return Violation(loss, module, "missing", msg)
    if module not in matrix.modules:
        msg += (f"the audit has no such module (modules: {_fmt_set(matrix.modules)})."
                f"{suggest(module, matrix.modules)}")
        return Violation(loss, module, "missing", msg)
    cell = matrix.cell(loss, module)
    how = "disconnected (None)" if cell.status == NONE else "exactly zero"
    msg += (f"its gradient there is {how}.\n  fix: check that the loss reads this module's "
            "output without sever/freeze/gate, and that the module lists the right variables.")
    return Violation(loss, module, "missing", msg, cell.status, cell.norm)


def _undeclared(loss: str, matrix: FlowMatrix) -> Violation:
    reached = [m for m in matrix.modules if matrix.status(loss, m) == FLOW]
    msg = (f"undeclared: loss {loss!r} is not in the flow contract (it reaches: "
           f"{_fmt_set(reached)}); declare it with contract.with_loss({loss!r}, Flow(...)).")
    return Violation(loss, None, "undeclared", msg)


class FlowContract:
    """Per-loss gradient-flow promises, checked against a FlowMatrix.

    `default` applies to losses not listed; without it an undeclared loss is a violation.
    Contracts are immutable: `with_loss` / `without_loss` / `with_default` return new ones.
    """

    def __init__(self, flows: Mapping[str, Flow] | None = None, *, default: Flow | None = None):
        flows = dict(flows or {})
        for name, flow in flows.items():
            if not isinstance(name, str):
                raise TypeError(f"FlowContract loss names must be str, got {name!r}.")
            if not isinstance(flow, Flow):
                raise TypeError(f"FlowContract[{name!r}] must be a Flow, got {flow!r}.")
        if default is not None and not isinstance(default, Flow):
            raise TypeError(f"FlowContract default must be a Flow or None, got {default!r}.")
        self._flows = MappingProxyType(flows)
        self._default = default

    @property
    def flows(self) -> Mapping[str, Flow]:
        """Declared losses (read-only)."""
        return self._flows

    @property
    def default(self) -> Flow | None:
        """Flow for losses not listed; None means undeclared losses are violations."""
        return self._default

    def flow_for(self, loss: str) -> Flow | None:
        """The Flow governing `loss` (declared or default), or None if undeclared."""
        return self._flows.get(loss, self._default)

    def with_loss(self, name: str, flow: Flow, *, replace: bool = False) -> FlowContract:
        """New contract that also declares `name`; redeclaring needs replace=True."""
        if name in self._flows and not replace:
            raise ValueError(f"Loss {name!r} is already declared ({self._flows[name]!r}); "
                             "pass replace=True to override it.")
        return FlowContract({**self._flows, name: flow}, default=self._default)

    def without_loss(self, name: str) -> FlowContract:
        """New contract without `name`."""
        if name not in self._flows:
            raise UnknownNameError(f"Loss {name!r} is not declared in the contract."
                                   f"{suggest(name, self._flows)}")
        return FlowContract({k: v for k, v in self._flows.items() if k != name},
                            default=self._default)

    def with_default(self, flow: Flow | None) -> FlowContract:
        """New contract with a different default for undeclared losses (None: error)."""
        return FlowContract(self._flows, default=flow)

    def check(self, matrix: FlowMatrix) -> list[Violation]:
        """Every violation of this contract in `matrix` (empty list: the contract holds)."""
        out: list[Violation] = []
        for loss in matrix.losses:
            flow = self.flow_for(loss)
            if flow is None:
                out.append(_undeclared(loss, matrix))
                continue
            for module in matrix.modules:
                status = matrix.status(loss, module)
                if module not in flow.may and status == FLOW:
                    out.append(_leak(loss, module, flow, matrix))
                elif module in flow.must and status != FLOW:
                    out.append(_missing(loss, module, matrix))
            out += [_missing(loss, m, matrix) for m in sorted(flow.must - set(matrix.modules))]
        # A requirement on a loss the agent never provided cannot have been verified.
        for loss, flow in self._flows.items():
            if loss not in matrix.losses:
                out += [_missing(loss, m, matrix) for m in sorted(flow.must)]
        return out

    def enforce(self, matrix: FlowMatrix) -> None:
        """Raise FlowContractError listing every violation, if there is any."""
        violations = self.check(matrix)
        if violations:
            raise FlowContractError(format_violations(violations, matrix))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FlowContract):
            return NotImplemented
        return dict(self._flows) == dict(other._flows) and self._default == other._default

    def __repr__(self) -> str:
        body = ", ".join(f"{k!r}: {v!r}" for k, v in self._flows.items())
        return f"FlowContract({{{body}}}, default={self._default!r})"


def _counts(violations: Sequence[Violation]) -> str:
    """'3 violations (2 leak, 1 missing)'."""
    n, kinds = len(violations), Counter(v.kind for v in violations)
    per_kind = ", ".join(f"{kinds[k]} {k}" for k in ("leak", "missing", "undeclared") if kinds[k])
    return f"{n} violation{'s' * (n != 1)} ({per_kind})"


def format_verdict(violations: Sequence[Violation]) -> str:
    """One line for the CLI / TensorBoard: OK, or FAIL with every offending (loss, module)."""
    if not violations:
        return "verdict: OK — every loss respects its gradient-flow contract"
    where = ", ".join(f"{v.kind} {v.loss}" + (f"→{v.module}" if v.module else "")
                      for v in violations)
    return f"verdict: FAIL — {_counts(violations)}: {where}"


def format_violations(violations: Sequence[Violation], matrix: FlowMatrix | None = None) -> str:
    """Multi-line report of every violation (the FlowContractError message)."""
    lines = [f"Gradient-flow contract violated: {_counts(violations)}"]
    for v in violations:
        first, *rest = str(v).splitlines()
        lines += [f"  - {first}", *(f"    {line}" for line in rest)]
    if matrix is not None:
        lines += ["", "Gradient-flow matrix:", matrix.to_table(violations)]
    return "\n".join(lines)
