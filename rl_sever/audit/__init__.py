"""Gradient-flow audit: per loss and per module, does gradient flow (norm), vanish (0) or
not connect at all (None)? Checked against each agent's FlowContract at the first update."""

from rl_sever.audit.contract import Flow, FlowContract, Violation, format_verdict, format_violations
from rl_sever.audit.matrix import FLOW, NONE, ZERO, FlowMatrix, ModuleFlow, VariableFlow, audit_flow
from rl_sever.audit.run import FlowAuditable, run_audit

__all__ = ["FLOW", "NONE", "ZERO", "Flow", "FlowAuditable", "FlowContract", "FlowMatrix",
           "ModuleFlow", "VariableFlow", "Violation", "audit_flow", "format_verdict",
           "format_violations", "run_audit"]
