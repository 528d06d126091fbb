"""An on-policy env runner that never imports TensorFlow: where the learner would act with the
NumPy host policy (rl_sever.onpolicy.host_policy), or the central inference server acts for
the runners, a runner needs no copy of the agent. It makes its share of the envs as the
agent would (rl_sever.core.agent_env), steps them with the collection loop the agent's
collector runs (rl_sever.onpolicy.rollout_collector) and acts with the NumPy policy on the weights the learner sends
once per update (rl_sever.onpolicy.numpy_policy), so it collects, bit for bit, what a runner
with a copy of the agent collects. Starting one costs Gymnasium's and NumPy's import instead
of TensorFlow's.

The learner describes each runner as a `RunnerPlan` (rl_sever.runners.group.host_runner_plans,
which also says where this runner does not apply: observation or reward normalisation, a
recurrent policy, a policy NumPy cannot compute, a user's class that changes how it acts).
"""

from __future__ import annotations

import os
from types import SimpleNamespace
from typing import NamedTuple

from rl_sever.config.spaces import ActionSpec
from rl_sever.core.agent_env import agent_env
from rl_sever.core.batch import Layout
from rl_sever.onpolicy.numpy_policy import NumpyPolicy, PolicyShape
from rl_sever.onpolicy.rollout_collector import RolloutCollector
from rl_sever.runners.cluster import import_ray
from rl_sever.runners.share import RemoteAct, call_result, copy_fields


class RunnerPlan(NamedTuple):
    """One runner's share of a run, as plain data (nothing in it imports TensorFlow)."""

    env_id: str
    env: dict
    """rl_sever.core.agent_env's settings: n_envs (the runner's), vectorization, n_workers,
    normalize_obs, normalize_reward, gamma, atari, runners."""
    seed: int
    """The runner's seed: its sub-envs' and its sampler's (a local run's sub-envs' seeds)."""
    n_steps: int
    check_finite: object
    layout: Layout
    action: ActionSpec
    masked: bool
    policy: PolicyShape | None
    """What the NumPy policy computes (None: the central inference server acts)."""


class _Acting:
    """What the on-policy collector reads of an agent, for a runner that has none."""

    recurrent = False  # (every call gives the step: the collector never reads a counter)

    def __init__(self, plan: RunnerPlan, env):
        self.config = SimpleNamespace(n_steps=plan.n_steps, n_envs=plan.env["n_envs"],
                                      check_finite=plan.check_finite)
        self.layout, self.data_seed, self.env = plan.layout, plan.seed, env
        self.masked, self.action = plan.masked, plan.action
        self.replicas = SimpleNamespace(workers=1)

    def env_actions(self, actions):
        return self.action.env_actions(actions)


class HostRunner:
    """Steps one share of the envs with the NumPy policy or the inference server (see the
    module docstring); its calls are those of rl_sever.runners.runner.EnvRunner's on-policy
    side."""

    def __init__(self, plan: RunnerPlan, index: int, server=None):
        self.index = index
        _, env = agent_env(plan.env_id, SimpleNamespace(**plan.env), plan.seed)
        self.env = env
        acting = _Acting(plan, env)
        if server is not None:
            self.policy = None
            self.collector = RolloutCollector(acting, act=RemoteAct(import_ray(), server))
        else:
            self.policy = NumpyPolicy(plan.policy, plan.seed)
            self.collector = RolloutCollector(acting, host=self.policy)

    def pid(self) -> int:
        return os.getpid()

    def node(self) -> str:
        """The Ray node this runner runs on (its id)."""
        return import_ray().get_runtime_context().get_node_id()

    def rollout(self, weights, step: int, stats=None) -> dict:
        """One rollout of n_steps from every sub-env with `weights` (in the NumPy policy's
        order; None where the inference server acts), from env step `step` (the sampler is
        seeded by it). `stats`: none (runs that normalise use the agent's runner)."""
        if weights is not None and self.policy is not None:
            self.policy.load(weights)
        self.collector.next_step = step
        collected = self.collector.collect()
        batch = type(collected.batch)(*(copy_fields(x) for x in collected.batch))
        return call_result(self.env, None, None, batch, collected.steps, self.index)
