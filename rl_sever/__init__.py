"""rl_sever: TensorFlow 2 actor-critic RL with explicit, provable gradient isolation.

The public API is declared here, once: every name below is importable as
`from rl_sever import NAME` and from the module it lives in (loaded on first use, so
`import rl_sever` stays light). The algorithms are in the `agents` package
(`from agents import PPO`). tests/test_public_api.py imports every name and every import
shown in the README, docs and examples.
"""

import importlib

__version__ = "0.1.0"

_PUBLIC = {
    # writing an algorithm: the bases of a page and their configs
    "rl_sever.core.agent": ["Agent"],
    "rl_sever.onpolicy.agent": ["OnPolicyAgent"],
    "rl_sever.offpolicy.agent": ["OffPolicyAgent"],
    "rl_sever.config.run": ["OnPolicyConfig", "RunConfig"],
    "rl_sever.config.offpolicy": ["OffPolicyConfig"],
    "rl_sever.core.registry": ["algorithm_names", "get_agent_class"],
    # loss terms
    "rl_sever.objective": ["LossTerm", "Objective", "loss_term", "actor_modules",
                           "critic_modules", "entropy_bonus", "policy_gradient", "ppo_clip",
                           "value_mse"],
    # gradient isolation
    "rl_sever.isolation": ["ActivationMask", "EdgeCut", "FreezeSchedule", "Gate", "GradientMask",
                           "MaskedConv2D", "MaskedDense", "Taps", "freeze", "frozen",
                           "is_frozen", "sever", "sever_edge", "sever_if", "unfreeze"],
    "rl_sever.core.optim": ["ModuleOptimizer"],
    # the gradient-flow audit
    "rl_sever.audit": ["Flow", "FlowContract", "audit_flow", "run_audit"],
    # training callbacks: stopping rules on the evaluations made during training
    "rl_sever.core.callbacks": ["CallbackList", "StopTrainingOnNoModelImprovement",
                                "StopTrainingOnRewardThreshold"],
    # deploying a trained policy (SavedModel, ONNX, LiteRT)
    "rl_sever.deploy": ["export"],
    # errors users catch
    "rl_sever.errors": ["ConfigError", "ExportError", "RLSeverError", "WriteError"],
}
_WHERE = {name: module for module, names in _PUBLIC.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'rl_sever' has no attribute '{name}'")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
