"""run_audit: audit an agent's losses against its own flow contract."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import tensorflow as tf

from rl_sever.audit.contract import FlowContract, Violation, format_verdict, format_violations
from rl_sever.audit.matrix import FlowMatrix, audit_flow
from rl_sever.errors import FlowContractError

_METHODS = ("flow_modules", "flow_losses", "flow_contract")


@runtime_checkable
class FlowAuditable(Protocol):
    """What an agent implements to be audited."""

    def flow_modules(self) -> Mapping[str, Sequence[tf.Variable]]:
        """Module name -> its variables (each variable in exactly one module)."""

    def flow_losses(self, batch: Any) -> Mapping[str, Callable[[], tf.Tensor]]:
        """Loss name -> zero-argument callable computing that scalar loss on `batch`."""

    def flow_contract(self) -> FlowContract:
        """Which modules each loss must and may reach."""


def run_audit(agent: FlowAuditable, batch: Any, *, writer: tf.summary.SummaryWriter | None = None,
              step: int = 0, enforce: bool = True) -> tuple[FlowMatrix, list[Violation]]:
    """Audit `agent` on `batch`, write the matrix to `writer`, and check its contract.

    The summary is written before enforcing so a failing run still shows its matrix in
    TensorBoard. With enforce=True any violation raises FlowContractError.
    """
    missing = [m for m in _METHODS if not callable(getattr(agent, m, None))]
    if missing:
        raise TypeError(f"{type(agent).__name__} cannot be audited: it does not implement "
                        f"{', '.join(m + '()' for m in missing)}.")
    contract = agent.flow_contract()
    if not isinstance(contract, FlowContract):
        raise TypeError(f"{type(agent).__name__}.flow_contract() returned "
                        f"{type(contract).__name__}, expected FlowContract.")
    matrix = audit_flow(agent.flow_losses(batch), agent.flow_modules())
    violations = contract.check(matrix)
    matrix.write_summary(writer, step, violations=violations, verdict=format_verdict(violations))
    if enforce and violations:
        raise FlowContractError(format_violations(violations, matrix))
    return matrix, violations
