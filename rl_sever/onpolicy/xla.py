"""Whether an on-policy update runs under XLA (config `jit_compile`: true, false or auto).

`auto` (the default) decides at each learn() call, from the run's whole budget (its target
step, so a resumed run or a run grown by several learn() calls chooses as one run would): XLA
compiles the update (and on a tf: env the fused iteration) when the run makes at least
AUTO_MIN_GRADIENT_STEPS gradient steps of at most AUTO_MAX_MINIBATCH rows, on an MLP policy on
the CPU with the shipped algorithms and loss terms. There each gradient step is a few hundred
tiny ops that the executor schedules one by one and XLA fuses; the compile costs about 1.2 s
more than tracing, which the run must win back (docs/performance.md: PPO CartPole 100k, 7,820
steps, and Acrobot 200k, 12,500 steps, faster as whole processes; A2C CartPole 100k, 2,500
steps, slower). Larger minibatches run faster on oneDNN's kernels than on XLA's CPU code
(docs/ingraph.md); images, recurrent cores, auxiliary modules, users' terms and algorithm
classes (which may use ops XLA lacks), a GPU and multi-device strategies stay as they are.

The minibatch shuffle differs between the two (XLA has no StatelessShuffle): the traced
function says which it is while it traces (`tracing`).

Under `auto` an update XLA cannot compile never ends the run: the compile error comes before
any op of the update runs (only the call's counter writes, which the second call repeats with
the same values), so `compiled_call` warns once and the agent runs (and keeps) the plain
update. An explicit `true` keeps the error.
"""

from __future__ import annotations

import contextlib
import warnings

import tensorflow as tf

from rl_sever.core.registry import is_shipped
from rl_sever.core.threads import small_mlp_on_cpu
from rl_sever.objective.evaluate import is_builtin

AUTO_MIN_GRADIENT_STEPS = 6_000
AUTO_MAX_MINIBATCH = 1_024


def gradient_steps(agent, env_steps: int) -> int:
    """Gradient steps the updates of `env_steps` env steps make (without early stops)."""
    updates = -(-max(0, env_steps) // agent.rollout_size)
    per_update = int(agent.n_epochs()) * max(1, agent.rollout_size // agent.minibatch_size())
    return updates * per_update


def auto_xla(agent, env_steps: int) -> bool:
    """Whether `jit_compile: auto` compiles the updates of a run of `env_steps` env steps."""
    cfg = agent.config
    shipped = is_shipped(type(agent))
    return (shipped and small_mlp_on_cpu(agent) and cfg.distribute == "default"
            and not agent.recurrent
            and not len(agent.aux) and all(is_builtin(t) for t in agent._objective)
            and agent.minibatch_size() <= AUTO_MAX_MINIBATCH
            and gradient_steps(agent, env_steps) >= AUTO_MIN_GRADIENT_STEPS)


class XlaFallbackWarning(UserWarning):
    """`jit_compile: auto` chose XLA, XLA could not compile the update: it runs without."""


def is_compile_error(error: Exception) -> bool:
    """Whether `error` is XLA refusing to compile a function (an op it has no kernel for, a
    failed conversion): raised before any op of the call ran."""
    return isinstance(error, (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError)) \
        and "XLA" in str(error)


class XlaChoice:
    """Mixed into OnPolicyAgent: the run's choice, and the flag read while tracing."""

    _xla_run = False  # the current learn() call's choice (auto)
    _xla_failed = False  # XLA could not compile this agent's update: plain from then on
    _xla_tracing: bool | None = None

    def plan_updates(self, env_steps: int) -> None:
        jit = self.config.jit_compile
        self._xla_run = (auto_xla(self, env_steps) and not self._xla_failed) if jit == "auto" \
            else bool(jit)

    def compiled_call(self, run):
        """`run()`, which calls this learn() call's compiled update (or fused iteration). Where
        `auto` chose XLA and XLA cannot compile it, warn once and run it again plain (the
        compile error came before any op of the call ran), plain from then on."""
        try:
            return run()
        except tf.errors.OpError as error:
            if not (self.config.jit_compile == "auto" and self._xla_run
                    and is_compile_error(error)):
                raise
            text = str(error).strip()
            first = text.splitlines()[0][:200] if text else type(error).__name__
            warnings.warn(f"jit_compile=auto: XLA could not compile the update ({first}); it "
                          "runs without XLA", XlaFallbackWarning, stacklevel=3)
            self._xla_run, self._xla_failed = False, True
        return run()

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
        """Inside a trace: whether to shuffle as XLA can: that function compiles with XLA, or
        config says true (its tf: env's plain first update shuffles as the fused ones)."""
        return bool(self._xla_tracing) or self.config.jit_compile is True
