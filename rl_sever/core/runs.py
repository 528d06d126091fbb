"""What the commands do with agents beyond training: resume a run folder, audit a first batch."""

from __future__ import annotations

from pathlib import Path

from rl_sever.audit import run_audit
from rl_sever.core import rundir
from rl_sever.core.agent import Agent
from rl_sever.core.evaluations import read_best
from rl_sever.errors import ConfigError


def resume(run_dir: str | Path, *, algo: str | None = None, env_id: str | None = None,
           overrides: dict | None = None, steps: int | None = None) -> Agent:
    """The agent of `run_dir` at its latest checkpoint, with the run-time `overrides`; `algo`
    and `env_id`, when given, must be the run's; `steps` more env steps become its target."""
    check_resume(run_dir, algo=algo, env_id=env_id, steps=steps)
    agent = Agent.load(run_dir, overrides=overrides or None, import_losses=True)
    if steps is not None:
        agent.target_steps.assign(int(agent.global_step.numpy()) + steps)
    return agent


def check_resume(run_dir, *, algo: str | None = None, env_id: str | None = None,
                 steps: int | None = None) -> dict:
    """The run's config.json record, once the resume's arguments are checked against it."""
    if steps is not None and steps <= 0:
        raise ConfigError(f"--steps must be positive, got {steps}")
    record = rundir.read_config(run_dir)
    best = read_best(run_dir)
    if best is not None:
        raise ConfigError(f"{run_dir} holds the best policy of run {best['run']} (for eval and "
                          "export); resume the run itself, its parent folder")
    for given, stored, what in ((algo, record["algo"], "algorithm"),
                                (env_id, record["env_id"], "env id")):
        if given is not None and given.lower() != str(stored).lower():
            raise ConfigError(f"{run_dir} was trained with {what} {stored}, not {given}")
    return record


def audit_first_batch(agent, max_steps: int = 10_000_000):
    """Collect until the agent has a training batch (off-policy: learning_starts), then audit
    it against the flow contract; returns (matrix, violations, env steps collected)."""
    batch, steps = None, 0
    while batch is None:
        collected = agent.collector.collect()
        batch, steps = collected.batch, steps + collected.steps
        agent.global_step.assign_add(collected.steps)
        if batch is None and steps > max_steps:
            raise ConfigError(f"the agent produced no training batch within {max_steps:,} steps")
    matrix, violations = run_audit(agent, batch, enforce=False)
    return matrix, violations, steps
