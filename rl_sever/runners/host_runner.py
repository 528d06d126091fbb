"""An env runner that never imports TensorFlow: where the policy acts in NumPy (the on-policy
host policy, rl_sever.onpolicy.host_policy; an off-policy page's NumPy actor and exploration,
rl_sever.offpolicy.exploration), or the central inference server acts for the runners, a
runner needs no copy of the agent. It makes its share of the envs as the agent would
(rl_sever.core.agent_env), steps them as a runner with a copy of the agent does (on-policy:
the collection loop of the agent's collector, rl_sever.onpolicy.rollout_collector; off-policy:
rl_sever.runners.share.Chunks) on the weights the learner sends once per update, so it
collects, bit for bit, what that runner collects. Starting one costs Gymnasium's and NumPy's
import instead of TensorFlow's.

The learner describes each runner as a `RunnerPlan` (rl_sever.runners.group.host_runner_plans,
which also says where this runner does not apply: an encoder, a policy NumPy cannot compute,
a user's class that changes how it collects or acts).
"""

from __future__ import annotations

import functools
import os
import random
from types import SimpleNamespace
from typing import NamedTuple

import numpy as np

from envs import find_normalizer
from rl_sever.config.spaces import ActionSpec
from rl_sever.core.agent_env import agent_env
from rl_sever.core.batch import Layout
from rl_sever.offpolicy.exploration import NumpyActor, unit_to_env
from rl_sever.onpolicy.numpy_policy import NumpyPolicy, PolicyShape
from rl_sever.onpolicy.rollout_collector import RolloutCollector
from rl_sever.runners.cluster import import_ray
from rl_sever.runners.share import Chunks, RemoteAct, call_result, copied, take_stats


class RunnerPlan(NamedTuple):
    """One runner's share of a run, as plain data (nothing in it imports TensorFlow)."""

    env_id: str
    env: dict
    """rl_sever.core.agent_env's settings: n_envs (the runner's), vectorization, n_workers,
    normalize_obs, normalize_reward, gamma, atari, runners."""
    seed: int
    """The runner's seed: its sub-envs' and its sampler's (a local run's sub-envs' seeds)."""
    check_finite: object
    action: ActionSpec
    on_policy: bool
    n_steps: int = 0
    """On-policy: the rollout's vector steps."""
    layout: Layout | None = None
    masked: bool = False
    policy: PolicyShape | None = None
    """On-policy: what the NumPy policy computes (None: the central inference server acts)."""
    actor: NumpyActor | None = None
    """Off-policy: the page's NumPy actor and exploration (None: the server acts)."""
    run_envs: int = 0
    """Off-policy: the run's envs (what one vector step of every runner adds to the step)."""
    unit_to_env: tuple = ()
    """Off-policy: (mid, half, dim) of the agent's unit actions: the env sees mid + half * a."""


class _Acting:
    """What the on-policy collector reads of an agent, for a runner that has none."""

    def __init__(self, plan: RunnerPlan, env):
        self.config = SimpleNamespace(n_steps=plan.n_steps, n_envs=plan.env["n_envs"],
                                      check_finite=plan.check_finite)
        self.layout, self.data_seed, self.env = plan.layout, plan.seed, env
        self.masked, self.action = plan.masked, plan.action
        self.replicas = SimpleNamespace(workers=1)
        self.recurrent = bool(plan.layout.state_dim)

    def env_actions(self, actions):
        return self.action.env_actions(actions)


class HostRunner:
    """Steps one share of the envs with the NumPy policy or the inference server (see the
    module docstring); its calls are those of rl_sever.runners.runner.EnvRunner's on-policy
    side."""

    def __init__(self, plan: RunnerPlan, index: int, server=None):
        self.index, self.plan = index, plan
        # Python's and NumPy's global generators seeded as the agent seeds them (a user's env
        # may draw from them).
        random.seed(plan.seed)
        np.random.seed(plan.seed)
        _, env = agent_env(plan.env_id, SimpleNamespace(**plan.env), plan.seed)
        self.env, self.normalizer = env, find_normalizer(env)
        self.remote = None if server is None else RemoteAct(import_ray(), server)
        self.policy = None
        if not plan.on_policy:  # the envs between calls
            mid, half, dim = plan.unit_to_env
            self.to_env = functools.partial(unit_to_env, mid, half)
            self.chunks = Chunks(env, plan.check_finite, plan.seed, plan.env["n_envs"], dim,
                                 plan.run_envs)
        elif self.remote is not None:
            self.collector = RolloutCollector(_Acting(plan, env), act=self.remote)
        else:
            self.policy = NumpyPolicy(plan.policy, plan.seed)
            self.collector = RolloutCollector(_Acting(plan, env), host=self.policy)

    def pid(self) -> int:
        return os.getpid()

    def node(self) -> str:
        """The Ray node this runner runs on (its id)."""
        return import_ray().get_runtime_context().get_node_id()

    def rollout(self, weights, step: int, stats=None) -> dict:
        """One rollout of n_steps from every sub-env with `weights` (in the NumPy policy's
        order; None where the inference server acts), from env step `step` (the sampler is
        seeded by it). `stats`: the learner's normaliser statistics, which it steps with (the
        result carries the moments of what it saw since)."""
        if weights is not None and self.policy is not None:
            self.policy.load(weights)
        base = take_stats(self.normalizer, stats)
        self.collector.next_step = step
        collected = self.collector.collect()
        return call_result(self.env, self.normalizer, base, copied(collected.batch),
                           collected.steps, self.index)

    def transitions(self, weights, step: int, n_vec: int, warmup_until: int,
                    stats=None) -> dict:
        """Off-policy: `n_vec` vector steps with `weights` (the actor's; None where the server
        acts), uniformly random actions while the env step is below `warmup_until`; the Steps
        stacked [n_vec, k, ...]."""
        if self.remote is not None:
            def act(obs, rng):
                return self.remote(obs)
        else:
            act = self.plan.actor.bind(weights)
        batch = self.chunks.chunk(step, n_vec, warmup_until, act, self.to_env)
        return call_result(self.env, None, None, batch, n_vec * self.plan.env["n_envs"],
                           self.index)
