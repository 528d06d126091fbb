"""audit_flow and FlowMatrix: where each loss sends gradient, per module and per variable."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import tensorflow as tf

from rl_sever.errors import UnknownNameError, suggest

# Violations (rl_sever.audit.contract.Violation) are read by attribute only: the contract
# module builds on this one, not the other way round.
Violation = Any

Status = Literal["none", "zero", "flow"]
NONE: Status = "none"  # disconnected: tape.gradient returned None
ZERO: Status = "zero"  # connected, but every element is exactly 0
FLOW: Status = "flow"  # some element is non-zero (NaN counts as non-zero)

TABLE_NAME = "audit/gradient_flow"
LEGEND = "— disconnected (None) · 0 connected but exactly zero · x.xe±yy global L2 gradient norm"


@dataclass(frozen=True)
class VariableFlow:
    """Gradient of one loss w.r.t. one variable."""

    status: Status
    norm: float | None  # None when disconnected


@dataclass(frozen=True)
class ModuleFlow:
    """Gradient of one loss w.r.t. one module: the aggregate plus per-variable detail."""

    status: Status
    norm: float | None  # global L2 norm over the module; None when disconnected
    variables: Mapping[str, VariableFlow] = field(default_factory=dict)

    def flowing(self) -> list[tuple[str, float]]:
        """(variable name, norm) of every variable with non-zero gradient, largest first."""
        out = [(n, v.norm) for n, v in self.variables.items() if v.status == FLOW]
        return sorted(out, key=lambda nv: -nv[1] if not math.isnan(nv[1]) else -math.inf)


def format_norm(cell: ModuleFlow | VariableFlow) -> str:
    """'—' for disconnected, '0' for exact zero, else short scientific notation."""
    if cell.status == NONE:
        return "—"
    if cell.status == ZERO:
        return "0"
    return f"{cell.norm:.1e}"


class FlowMatrix:
    """Result of `audit_flow`: rows are losses, columns are modules."""

    def __init__(self, cells: Mapping[tuple[str, str], ModuleFlow], losses: Sequence[str],
                 modules: Sequence[str], loss_values: Mapping[str, float] | None = None) -> None:
        self.losses: tuple[str, ...] = tuple(losses)
        self.modules: tuple[str, ...] = tuple(modules)
        self.loss_values: dict[str, float] = dict(loss_values or {})
        missing = [(lo, m) for lo in self.losses for m in self.modules if (lo, m) not in cells]
        if missing:
            raise ValueError(f"FlowMatrix is missing cells {missing}")
        self._cells = dict(cells)

    def cell(self, loss: str, module: str) -> ModuleFlow:
        """Aggregate and per-variable gradient flow of `loss` into `module`."""
        if loss not in self.losses:
            raise UnknownNameError(f"No loss {loss!r} in the audit.{suggest(loss, self.losses)}")
        if module not in self.modules:
            raise UnknownNameError(f"No module {module!r} in the audit."
                                   f"{suggest(module, self.modules)}")
        return self._cells[(loss, module)]

    def status(self, loss: str, module: str) -> Status:
        """'none' (disconnected), 'zero' (connected, exactly zero) or 'flow'."""
        return self.cell(loss, module).status

    def norm(self, loss: str, module: str) -> float | None:
        """Global L2 norm of d loss / d module; None when disconnected, 0.0 when exactly zero."""
        return self.cell(loss, module).norm

    def _body(self, violations: Iterable[Violation]) -> tuple[list[list[str]], str]:
        """Table rows (loss, then one formatted cell per module, '!' if flagged) and legend."""
        flagged = {(v.loss, v.module) for v in violations}
        mark = lambda lo, m: "!" if (lo, m) in flagged else ""  # noqa: E731
        rows = [[lo, *(format_norm(self._cells[(lo, m)]) + mark(lo, m) for m in self.modules)]
                for lo in self.losses]
        return rows, LEGEND + (" · ! contract violation" if flagged else "")

    def to_table(self, violations: Iterable[Violation] = ()) -> str:
        """Aligned plain-text table; cells named in `violations` are marked with '!'."""
        rows, legend = self._body(violations)
        rows = [["loss \\ module", *self.modules], *rows]
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join([*lines, legend])

    def to_markdown(self, violations: Iterable[Violation] = ()) -> str:
        """Markdown table (TensorBoard text plugin renders it); '!' marks violations."""
        rows, legend = self._body(violations)
        lines = ["| loss \\ module | " + " | ".join(self.modules) + " |",
                 "|:--|" + "--:|" * len(self.modules)]
        return "\n".join([*lines, *("| " + " | ".join(r) + " |" for r in rows), "", legend])

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable (even with allow_nan=False): non-finite norms become strings."""

        def num(x: float | None) -> float | str | None:
            return x if x is None or math.isfinite(x) else str(x)

        def entry(c: ModuleFlow | VariableFlow) -> dict[str, Any]:
            return {"status": c.status, "norm": num(c.norm)}

        def module(c: ModuleFlow) -> dict[str, Any]:
            return {**entry(c), "variables": {n: entry(v) for n, v in c.variables.items()}}

        cells = {lo: {m: module(self._cells[(lo, m)]) for m in self.modules} for lo in self.losses}
        return {"losses": list(self.losses), "modules": list(self.modules),
                "loss_values": {k: num(v) for k, v in self.loss_values.items()}, "cells": cells}

    def write_summary(self, writer: tf.summary.SummaryWriter | None, step: int, *,
                      violations: Sequence[Violation] = (), verdict: str | None = None) -> None:
        """Write the markdown table as TensorBoard text 'audit/gradient_flow' (no-op if None).

        With a `verdict` line (rl_sever.audit.contract.format_verdict) it and every violation
        are appended.
        """
        if writer is None:
            return
        text = self.to_markdown(violations)
        if verdict is not None:
            text += "\n\n**" + verdict + "**"
            text += "".join(f"\n\n```\n{v}\n```" for v in violations)
        with writer.as_default():
            tf.summary.text(TABLE_NAME, text, step=step)
        writer.flush()

    def __repr__(self) -> str:
        return f"FlowMatrix(losses={list(self.losses)}, modules={list(self.modules)})"

    def __str__(self) -> str:
        return self.to_table()


def _as_tf_variable(v: Any, module: str) -> tf.Variable:
    # tf.Variable first: its `.value` is a method, a Keras 3 Variable's `.value` is the backing
    # tf.Variable, which is what tape.watch accepts and what the layer's forward pass reads.
    if isinstance(v, tf.Variable):
        return v
    inner = getattr(v, "value", None)
    if isinstance(inner, tf.Variable):
        return inner
    raise TypeError(f"Module {module!r} holds {type(v).__name__} {v!r:.80}; expected tf.Variable "
                    "or keras.Variable.")


def _collect(
    modules: Mapping[str, Sequence[tf.Variable]],
) -> dict[str, list[tuple[str, tf.Variable]]]:
    """Validate the module map; return module -> [(unique display name, tf.Variable)]."""
    if not modules:
        raise ValueError("audit_flow needs at least one module; an empty audit proves nothing.")
    owner: dict[Any, tuple[str, str]] = {}
    out: dict[str, list[tuple[str, tf.Variable]]] = {}
    for module, variables in modules.items():
        if not isinstance(module, str):
            raise TypeError(f"Module names must be str, got {module!r}.")
        is_model = hasattr(variables, "variables")  # keras.Layer / keras.Model / tf.Module
        single = isinstance(variables, tf.Variable) or isinstance(getattr(variables, "value", None),
                                                                  tf.Variable)
        if is_model or single or isinstance(variables, str) or not isinstance(variables, Iterable):
            # A model is rejected rather than expanded: trainable_variables would hide
            # non-trainable targets from the audit, so the agent must say which list it means.
            hint = " (pass model.variables)" if is_model else ""
            raise TypeError(f"Module {module!r} must be a list of variables, got "
                            f"{type(variables).__name__}{hint}.")
        seen_names: dict[str, int] = {}
        out[module] = []
        for v in variables:
            inner = _as_tf_variable(v, module)
            path = getattr(v, "path", None)  # Keras 3: 'model/layer/kernel'
            name = path if isinstance(path, str) and path else inner.name.removesuffix(":0")
            key = inner.ref()
            if key in owner:
                first_module, first_name = owner[key]
                where = (f"twice in module {module!r}" if first_module == module
                         else f"in two modules: {first_module!r} and {module!r}")
                raise ValueError(f"Variable {first_name!r} is listed {where}; a variable may "
                                 "belong to only one module.")
            # Same-named variables (e.g. two unnamed tf.Variables) must stay distinguishable
            # in violation messages.
            seen_names[name] = count = seen_names.get(name, 0) + 1
            unique = name if count == 1 else f"{name}#{count}"
            owner[key] = (module, unique)
            out[module].append((unique, inner))
    return out


def _judge(grad: Any) -> VariableFlow:
    if grad is None:
        return VariableFlow(NONE, None)
    if isinstance(grad, tf.IndexedSlices):
        # Duplicate indices add up in the dense gradient (and may cancel), so sum them first.
        uniq, idx = tf.unique(grad.indices)
        grad = tf.math.unsorted_segment_sum(grad.values, idx, tf.size(uniq))
    values = np.abs(np.asarray(tf.convert_to_tensor(grad))).astype(np.float64)
    if not np.any(values != 0):  # NaN != 0, so NaN gradients count as flow
        return VariableFlow(ZERO, 0.0)
    return VariableFlow(FLOW, float(np.sqrt(np.sum(np.square(values)))))


def _aggregate(variables: dict[str, VariableFlow]) -> ModuleFlow:
    statuses = {v.status for v in variables.values()}
    if FLOW in statuses:
        total = sum(v.norm**2 for v in variables.values() if v.status == FLOW)
        return ModuleFlow(FLOW, math.sqrt(total), variables)
    if ZERO in statuses:
        return ModuleFlow(ZERO, 0.0, variables)
    return ModuleFlow(NONE, None, variables)


def _checked_loss(name: str, value: Any) -> tf.Tensor:
    if value is None:
        raise ValueError(f"Loss {name!r} returned None; a loss callable must return a scalar.")
    try:
        value = tf.convert_to_tensor(value)
    except (TypeError, ValueError) as e:
        raise TypeError(f"Loss {name!r} returned {type(value).__name__}, not a tensor.") from e
    if value.shape.rank != 0:
        raise ValueError(f"Loss {name!r} must be a scalar, got shape {value.shape.as_list()}; "
                         "reduce it (e.g. tf.reduce_mean) inside the loss callable.")
    if not (value.dtype.is_floating or value.dtype.is_complex):
        raise TypeError(f"Loss {name!r} has dtype {value.dtype.name}; it must be floating.")
    if not np.isfinite(value.numpy()):
        raise ValueError(f"Loss {name!r} is not finite ({value.numpy()}); cannot audit it.")
    return value


def audit_flow(losses: Mapping[str, Callable[[], tf.Tensor]],
               modules: Mapping[str, Sequence[tf.Variable]]) -> FlowMatrix:
    """Differentiate each loss separately w.r.t. every module's variables (eager only).

    One GradientTape per loss, watching exactly the module variables (never whatever the
    forward pass happens to touch). Loss callables run their own forward pass and may call
    tf.function-compiled code. Non-floating variables (counters, RNG state) carry no gradient
    and are skipped. No gradient is applied, but side effects of the forward pass (e.g. batch
    norm statistics in training mode) do happen.
    """
    if not tf.executing_eagerly():
        raise RuntimeError("audit_flow runs eagerly; call it outside tf.function.")
    if not losses:
        raise ValueError("audit_flow needs at least one loss; an empty audit proves nothing.")
    per_module = _collect(modules)
    watched = [(module, name, var) for module, entries in per_module.items()
               for name, var in entries if var.dtype.is_floating or var.dtype.is_complex]
    sources = [var for _, _, var in watched]

    cells: dict[tuple[str, str], ModuleFlow] = {}
    loss_values: dict[str, float] = {}
    for loss_name, fn in losses.items():
        if not callable(fn):
            raise TypeError(f"Loss {loss_name!r} must be a zero-argument callable, got {fn!r:.80}.")
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(sources)
            try:
                value = fn()
            except Exception as e:
                if hasattr(e, "add_note"):  # Python >= 3.11
                    e.add_note(f"(while computing loss {loss_name!r} for the gradient-flow audit)")
                raise
        value = _checked_loss(loss_name, value)
        loss_values[loss_name] = float(np.real(value.numpy()))
        grads = tape.gradient(value, sources) if sources else []
        detail: dict[str, dict[str, VariableFlow]] = {m: {} for m in per_module}
        for (module, name, _), grad in zip(watched, grads):
            detail[module][name] = _judge(grad)
        cells.update({(loss_name, m): _aggregate(d) for m, d in detail.items()})
    return FlowMatrix(cells, list(losses), list(per_module), loss_values)
