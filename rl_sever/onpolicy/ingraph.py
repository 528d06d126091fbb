"""In-graph on-policy training on TF-native environments (``tf:<id>`` env ids).

When an on-policy agent's vector env is a TF-native one (envs.tfnative), a whole training
iteration runs as ONE compiled call: the rollout of n_steps over all N envs (policy sampling
and ``env.step_autoreset`` in a ``tf.while_loop`` writing TensorArrays), then GAE and every
epoch and minibatch of the update (``agent._train``) on the collected [T, N] tensors. Nothing
returns to Python between env steps; the shared training loop (rl_sever.core.loop) only
schedules, logs and checkpoints around it.

How the loop stays shared: ``InGraphCollector.collect`` runs the fused call and returns a
``Collected`` with the metrics of the update that already happened, which
``OnPolicyAgent.logged_metrics`` maps to TensorBoard names. The first iteration of a fresh run is the exception:
when the audit is on (config.audit, the default) it is rollout-only and returns the ordinary
rollout dict, so the loop's gradient-flow audit runs on a real batch before the ordinary
compiled update (``agent.train_fn``) trains on it.

The env state (an EnvState) and the per-env running episode return/length live in
tf.Variables (``InGraphEnvState``), part of the agent's checkpoint, so a resumed run continues
the same episodes. Finished episodes come back per iteration and are pushed into the env's
EpisodeStats wrapper, so rollout/ep_rew_mean and ep_len_mean are computed as on the Gymnasium
path.
"""

from __future__ import annotations

import tensorflow as tf

from rl_sever.core.ingraph_env import InGraphEnvState, TFEnvCollector, drive, record_episodes
from rl_sever.core.loop import Collected
from rl_sever.core.rollout import Rollout


class InGraphTrainer:
    """The agent's compiled in-graph functions, built once per agent so they trace once.

    ``iteration_fn()``: rollout + update in one call, returns (metrics, episodes).
    ``rollout_fn()``: the rollout alone, returns (batch, episodes) (first iteration, audit).
    Both take no arguments: every input (env state, parameters, schedules, flags) is a
    tf.Variable, so annealing and switching never retrace.
    """

    def __init__(self, agent, env):
        cfg = agent.config
        self.agent, self.env = agent, env
        self.n_envs, self.n_steps = cfg.n_envs, cfg.n_steps
        self.state = InGraphEnvState(env, self.n_envs)
        self.rollout_fn = tf.function(self._rollout, input_signature=[])
        self.iteration_fn = tf.function(self._iteration, input_signature=[],
                                        jit_compile=bool(getattr(cfg, "jit_compile", False)))
        act = agent.action
        if act.kind == "box":  # clip only what the env sees; the batch keeps the sample
            low, high = tf.constant(act.low), tf.constant(act.high)
            self._env_action = lambda a: tf.clip_by_value(a, low, high)
        else:
            self._env_action = lambda a: a

    # -- compiled bodies ------------------------------------------------------------------
    def _rollout(self):
        agent, T, n = self.agent, self.n_steps, self.n_envs
        rows = Rollout.spec(agent.layout, lead=()).map(
            lambda s: tf.TensorArray(s.dtype, size=T, element_shape=[n, *s.shape]))

        def act(i, obs):
            actions, log_prob, value = agent._behave(obs)
            return actions, self._env_action(actions), {"log_prob": log_prob, "value": value}

        def record(i, st, rows):
            return Rollout(*(r.write(i, x) for r, x in zip(rows, Rollout.row(st.record)))), False

        _, rows, episodes = drive(self.env, self.state, T, T, act, record, rows)
        return rows.map(lambda r: r.stack()), episodes

    def _iteration(self):
        batch, episodes = self._rollout()
        return self.agent._train(*batch), episodes


class InGraphCollector(TFEnvCollector):
    """The training loop's collector for TF-native envs (see the module docstring). The first
    iteration of a fresh run is rollout-only, so the audit sees a real batch (then the ordinary
    compiled update trains on it)."""

    def __init__(self, agent):
        super().__init__(agent, fresh=int(agent.global_step.numpy()) == 0)

    def collect(self) -> Collected:
        trainer = self.trainer
        self.start()
        steps = trainer.n_steps * trainer.n_envs
        if self.audit_next:
            self.audit_next = False
            batch, episodes = trainer.rollout_fn()
            record_episodes(self.stats, episodes)
            return Collected(steps, batch=batch)
        metrics, episodes = trainer.iteration_fn()
        record_episodes(self.stats, episodes)
        return Collected(steps, metrics=metrics)
