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

from rl_sever.core.ingraph_env import InGraphEnvState, TFEnvCollector, record_episodes
from rl_sever.core.loop import Collected
from rl_sever.core.rollout import graph_step
from rl_sever.onpolicy.rollout_buffer import Rollout


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
        agent, env, s = self.agent, self.env, self.state
        T, n = self.n_steps, self.n_envs
        state = s.read()

        def buffer(dtype, shape=()):
            return tf.TensorArray(dtype, size=T, element_shape=[n, *shape])

        obs_shape, act_shape = agent.obs_shape, agent.action.shape
        # obs, actions, rewards, terminated, dones, next_obs, ended returns, ended lengths
        bufs = (
            buffer(tf.float32, obs_shape),
            buffer(tf.as_dtype(agent.action.dtype), act_shape),
            buffer(tf.float32),
            buffer(tf.bool),
            buffer(tf.bool),
            buffer(tf.float32, obs_shape),
            buffer(tf.float64),
            buffer(tf.int32),
        )

        def body(i, state, obs, ep_ret, ep_len, bufs):
            actions = agent._act(obs)
            st = graph_step(env, state, obs, actions, self._env_action(actions), ep_ret, ep_len)
            row = (obs, actions, st.reward, st.terminated, st.done, st.reached,
                   st.ended_return, st.ended_length)
            bufs = tuple(b.write(i, x) for b, x in zip(bufs, row))
            return i + 1, st.state, st.next_obs, st.ep_return, st.ep_length, bufs

        init = (
            tf.constant(0),
            state,
            env.observe(state),
            s.ep_return.read_value(),
            s.ep_length.read_value(),
            bufs,
        )
        _, state, _, ep_ret, ep_len, bufs = tf.while_loop(lambda i, *_: i < T, body, init,
                                                          maximum_iterations=T)
        s.write(state)
        s.ep_return.assign(ep_ret)
        s.ep_length.assign(ep_len)
        obs, actions, rewards, terminated, dones, next_obs, ret, length = (b.stack() for b in bufs)
        batch = Rollout(obs, actions, rewards, terminated, dones, next_obs)
        return batch, {"dones": dones, "returns": ret, "lengths": length}

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
