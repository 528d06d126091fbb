"""Whether an on-policy update runs under XLA (config `jit_compile`: true, false or auto).

`auto` (the default) decides once per learn() call, from the run about to start: XLA compiles
the update (and on a tf: env the fused iteration) when the run makes at least
AUTO_MIN_GRADIENT_STEPS gradient steps of at most AUTO_MAX_MINIBATCH rows, on an MLP policy on
the CPU with the shipped loss terms. There each gradient step is a few hundred tiny ops that the
executor schedules one by one and XLA fuses; the compile costs about 1.2 s, which the run must
win back (measured in docs/performance.md: PPO CartPole 100k, 7,800 steps, 0.5 s faster as a
whole process; Acrobot 200k, 12,500 steps, 1.7 s; A2C CartPole 100k, 2,500 steps, 0.6 s
slower). Larger minibatches run faster on oneDNN's kernels than on XLA's CPU code
(docs/ingraph.md); images, recurrent cores, auxiliary modules, users' terms (which may use ops
XLA lacks), a GPU and multi-device strategies stay as they are.

The minibatch shuffle differs between the two (XLA has no StatelessShuffle): the traced
function says which it is while it traces (`tracing`).
"""

from __future__ import annotations

import contextlib

from rl_sever.core.threads import small_mlp_on_cpu
from rl_sever.objective.evaluate import is_builtin

AUTO_MIN_GRADIENT_STEPS = 6_000
AUTO_MAX_MINIBATCH = 1_024


def gradient_steps(agent, env_steps: int) -> int:
    """Gradient steps the updates of `env_steps` more env steps make (without early stops)."""
    updates = -(-max(0, env_steps) // agent.rollout_size)
    per_update = int(agent.n_epochs()) * max(1, agent.rollout_size // agent.minibatch_size())
    return updates * per_update


def auto_xla(agent, env_steps: int) -> bool:
    """Whether `jit_compile: auto` compiles the updates of `env_steps` more env steps."""
    cfg = agent.config
    return (small_mlp_on_cpu(agent) and cfg.distribute == "default" and not agent.recurrent
            and not len(agent.aux) and all(is_builtin(t) for t in agent._objective)
            and agent.minibatch_size() <= AUTO_MAX_MINIBATCH
            and gradient_steps(agent, env_steps) >= AUTO_MIN_GRADIENT_STEPS)


class XlaChoice:
    """Mixed into OnPolicyAgent: the run's choice, and the flag read while tracing."""

    _xla_run = False  # the current learn() call's choice (auto)
    _xla_tracing: bool | None = None

    def plan_updates(self, env_steps: int) -> None:
        jit = self.config.jit_compile
        self._xla_run = auto_xla(self, env_steps) if jit == "auto" else bool(jit)

    def uses_xla(self) -> bool:
        """Whether this learn() call's updates run under XLA."""
        jit = self.config.jit_compile
        return self._xla_run if jit == "auto" else bool(jit)

    @contextlib.contextmanager
    def tracing(self, jit_compile: bool):
        """Around the trace of a function compiled with (or without) XLA."""
        before, self._xla_tracing = self._xla_tracing, bool(jit_compile)
        try:
            yield
        finally:
            self._xla_tracing = before

    def traced_with_xla(self) -> bool:
        """Inside a trace: whether that function compiles with XLA (else config's explicit
        true)."""
        return self._xla_tracing if self._xla_tracing is not None else self.config.jit_compile is True
