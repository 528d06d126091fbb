"""One env runner: a copy of the agent without logging whose collector steps its own share of
the envs (rl_sever.runners). Made as a Ray actor by rl_sever.runners.group, or in-process (the
tests compare the two bit for bit).

Runner `index` of `count` steps sub-envs [index * k, (index + 1) * k) of the run's n_envs
(k = n_envs / count), seeded as those sub-envs of a local run: its config's seed is
`seed + index * k`, so its vector env seeds sub-env j with `seed + index * k + j`, as the
learner's would. It acts with its copy of the policy (the NumPy host policy for MLPs, else
TensorFlow on its CPU; off-policy: the page's NumPy exploration for MLP actors, else its
compiled act step), whose weights the learner sends once per update; it returns NumPy arrays
only. On-policy runs whose policy acts in NumPy get rl_sever.runners.host_runner instead: the
same collection without the agent or TensorFlow.
"""

from __future__ import annotations

import math
import os

import tensorflow as tf

from rl_sever.core.collected import Collected
from rl_sever.core.compiled import FastCall, per_agent
from rl_sever.runners.cluster import import_ray
from rl_sever.runners.share import (
    Chunks,
    RemoteAct,
    call_result,
    copied,
    runner_config,
    stack_rows,  # noqa: F401  (its earlier import path)
    take_stats,
)


class EnvRunner:
    """Steps one share of the envs with a copy of the policy (see the module docstring)."""

    def __init__(self, agent_class, env_id: str, config, index: int, count: int,
                 encoder=None, server=None):
        """`server`: the central inference actor that acts for this runner (None: it acts with
        its own copy of the policy)."""
        self.index, self.run_envs = index, config.n_envs  # the run's envs: a vector step's steps
        _limit_threads(config.runner_cpus)
        self.agent = agent_class(env_id, runner_config(config, index, count), logdir=None,
                                 encoder=encoder)
        self.set_weights = weight_setter(self.agent.acting_variables())
        self.normalizer = self.agent.normalizer
        self.remote = None if server is None else RemoteAct(import_ray(), server)
        if self.remote is not None and self.agent.mode == "on_policy":
            collector = self.agent.collector
            collector.host, collector.act = None, self.remote
        self._base = None  # the normaliser statistics the learner sent for this call
        self.chunks = None  # off-policy: the envs between calls

    def pid(self) -> int:
        return os.getpid()

    def node(self) -> str:
        """The Ray node this runner runs on (its id)."""
        return import_ray().get_runtime_context().get_node_id()

    def _sync(self, weights, step: int, stats) -> None:
        if weights is not None:  # (none: the inference server acts for this runner)
            self.set_weights(*weights)
        self.agent.invalidate_host_copies()
        self.agent.global_step.assign(step)
        self._base = take_stats(self.normalizer, stats)

    def _result(self, batch, steps: int) -> dict:
        return call_result(self.agent.env, self.normalizer, self._base, batch, steps, self.index)

    def rollout(self, weights, step: int, stats=None) -> dict:
        """On-policy: one rollout of n_steps from every sub-env with `weights`, from env step
        `step` (the host policy's sampler is seeded by it)."""
        self._sync(weights, step, stats)
        collected: Collected = self.agent.collector.collect()
        return self._result(copied(collected.batch), collected.steps)

    def transitions(self, weights, step: int, n_vec: int, warmup_until: int,
                    stats=None) -> dict:
        """Off-policy: `n_vec` vector steps with `weights` (uniformly random actions while the
        env step is below `warmup_until`); the Steps stacked [n_vec, k, ...]."""
        self._sync(weights, step, stats)
        agent, k = self.agent, self.agent.config.n_envs
        if self.chunks is None:
            self.chunks = Chunks(agent.env, agent.config.check_finite, agent.config.seed, k,
                                 agent.action_dim, self.run_envs)
        # The inference server, else NumPy acting for MLP actors, else the compiled act step.
        host = None if self.remote is not None else agent.host_actor()
        if self.remote is not None:
            def act(obs, rng):
                return self.remote(obs)
        elif host is not None:
            act = host.bind(weights)
        else:
            def act(obs, rng):
                return agent.act_unit(obs)
        batch = self.chunks.chunk(step, n_vec, warmup_until, act, agent.to_env)
        return self._result(batch, n_vec * k)


def weight_setter(variables: list):
    """`setter(*arrays)` assigning `variables` in one compiled call (an eager assign per
    variable cost a dispatch each, per rollout)."""
    if not variables:
        return lambda *values: None

    def assign(*values):
        with tf.control_dependencies([v.assign(x) for v, x in zip(variables, values)]):
            return tf.constant(0)

    specs = [tf.TensorSpec(v.shape, v.dtype) for v in variables]
    return FastCall(per_agent(tf.function(assign, input_signature=specs, autograph=False)))


def _limit_threads(cpus: float) -> None:
    """TensorFlow's pools sized to the CPUs Ray reserved for the runner (a runner made in a
    process where TensorFlow already ran keeps that process's pools)."""
    n = max(1, math.ceil(cpus))
    try:
        tf.config.threading.set_intra_op_parallelism_threads(n)
        tf.config.threading.set_inter_op_parallelism_threads(n)
    except RuntimeError:
        pass


