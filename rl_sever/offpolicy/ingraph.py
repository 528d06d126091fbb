"""In-graph off-policy training on TF-native environments (``tf:<id>`` env ids): chunks of
vector steps (act, step, store in the tf.Variable replay buffer, update every train_freq steps
once learning_starts transitions are held) as one compiled call through core.ingraph_env.drive,
on the Gymnasium path's schedule and with the agent's own update. A fresh run's chunk stops
before the first update, whose batch the loop audits. Every input is a tf.Variable or a call
argument, so it traces once per agent. Details: docs/ingraph.md#off-policy-sac-td3.
"""

from __future__ import annotations

import tensorflow as tf

from rl_sever.core import counters, metrics
from rl_sever.core.collected import Collected
from rl_sever.core.compiled import per_agent, plain_graph
from rl_sever.core.ingraph_env import InGraphEnvState, TFEnvCollector, drive, record_episodes
from rl_sever.core.registry import is_shipped
from rl_sever.errors import UnsupportedSpaceError
from rl_sever.nn.encoders import is_image
from rl_sever.offpolicy.replay import Transitions
from rl_sever.offpolicy.replay_tf import TFReplayBuffer


class InGraphOffPolicyTrainer:
    """The agent's compiled in-graph chunk and its state (env, replay buffer, update phase).

    ``chunk_fn(n_vec, stop_before_update)`` runs up to `n_vec` (<= `chunk`) vector steps and
    returns (raw metrics of its updates (rl_sever.core.metrics), episodes {dones, returns,
    lengths} of shape [chunk, n_envs], env steps taken, stopped). With `stop_before_update` it
    stops at the first step where an update is due, without running it (`stopped` is then true).
    ``sample_fn()`` samples one update's batch ([gradient_steps, batch_size, ...]) in-graph.
    """

    def __init__(self, agent, env):
        cfg = agent.config
        if is_image(agent.obs_shape, agent.obs_dtype) or env.is_discrete:
            raise UnsupportedSpaceError(f"in-graph {agent.algo.upper()} needs a continuous "
                                        f"TF-native env with vector observations, got {env.name}")
        self.agent, self.env = agent, env
        self.n_envs, self.train_freq = cfg.n_envs, cfg.train_freq
        # Whole updates per chunk, as the Gymnasium collector's iteration.
        self.chunk = -(-cfg.steps_per_iteration // cfg.train_freq) * cfg.train_freq
        self.state = InGraphEnvState(env, self.n_envs)
        self.replay = TFReplayBuffer(cfg.buffer_size, cfg.n_envs, agent.obs_shape, agent.obs_dtype,
                                     (agent.action_dim,), n_step=cfg.n_step, gamma=cfg.gamma)
        # Vector steps since the last update: the train_freq phase carries across chunks and
        # resumes (checkpointed), so a resumed run updates on the same steps.
        self.since_update = tf.Variable(0, dtype=tf.int32, trainable=False, name="since_update")
        self.ready_size = max(1, min(cfg.learning_starts, self.replay.capacity))
        self.jit_compile = agent.jit_compile
        # Traced as written (explicit tf.while_loop / tf.cond): AutoGraph converting the whole
        # agent would dominate the trace time (rl_sever.core.compiled.plain_graph).
        self.chunk_fn = per_agent(tf.function(
            plain_graph(self._chunk), jit_compile=self.jit_compile,
            input_signature=[tf.TensorSpec([], tf.int32), tf.TensorSpec([], tf.bool)]))
        self.sample_fn = per_agent(tf.function(
            plain_graph(lambda: self._sample(self.agent.next_seed())), input_signature=[]))
        # The shipped update loops with tf.while_loop and is traced as written; a user's class
        # keeps AutoGraph for its update (it may loop over tf.range), as on the Gymnasium path.
        update = type(agent)._update
        self._agent_update = update if is_shipped(type(agent)) else tf.autograph.to_graph(update)

    def trackables(self) -> dict:
        """What a resume needs: env state and update phase; the buffer if save_replay."""
        out = {"ingraph_env": self.state, "ingraph_since_update": self.since_update}
        if self.agent.config.save_replay:
            out["replay"] = self.replay
        return out

    # -- compiled bodies ------------------------------------------------------------------
    def _sample(self, seed: tf.Tensor) -> Transitions:
        agent, cfg = self.agent, self.agent.config
        G, B = cfg.updates_per_call(), cfg.batch_size
        flat = self.replay.sample(G * B, seed, one_step=agent._one_step)
        return flat.map(lambda v: tf.reshape(v, [G, B, *v.shape[1:]]))

    def _act(self, obs: tf.Tensor, step: tf.Tensor) -> tf.Tensor:
        """Unit actions in [-1, 1]: uniformly random before learning_starts (as SB3)."""
        agent = self.agent
        return tf.cond(step < agent.config.learning_starts,
                       lambda: tf.random.stateless_uniform([self.n_envs, agent.action_dim],
                                                           agent.next_seed(), -1.0, 1.0),
                       lambda: agent._act_unit(obs, agent.next_seed()))

    def _update(self) -> dict[str, tf.Tensor]:
        return self._agent_update(self.agent, self._sample(self.agent.next_seed()))

    def _chunk(self, n_vec: tf.Tensor, stop_before_update: tf.Tensor):
        agent, replay, n = self.agent, self.replay, self.n_envs
        keys = agent.all_metric_keys()
        start = agent.global_step.read_value()

        def act(i, obs):
            unit = self._act(obs, start + tf.cast(i * n, tf.int64))
            return unit, agent._to_env(unit), {}

        def after(i, st, carry):
            since, stats, _ = carry
            # As the Gymnasium collector: the phase counter is not reset while the buffer is
            # still filling, so the first update happens as soon as it is ready.
            since = since + 1
            due = (since >= self.train_freq) & (replay.size() >= self.ready_size)
            stopped = due & stop_before_update
            stats = metrics.add(stats, tf.cond(due & ~stopped, self._update,
                                               lambda: metrics.skipped(keys)))
            return (tf.where(due, 0, since), stats, stopped), stopped

        i, (since, stats, stopped), episodes = drive(
            self.env, self.state, n_vec, self.chunk, act, after,
            (self.since_update.read_value(), metrics.skipped(keys), tf.constant(False)), replay)
        self.since_update.assign(since)
        return stats, episodes, tf.cast(i * n, tf.int64), stopped


class InGraphOffPolicyCollector(TFEnvCollector):
    """The training loop's collector for off-policy agents on TF-native envs: the chunk stops
    before the first update of a fresh run, whose batch the loop audits."""

    def __init__(self, agent):
        super().__init__(agent, fresh=int(agent.n_updates.numpy()) == 0)

    def collect(self) -> Collected:
        agent, trainer = self.agent, self.trainer
        self.start()
        step = counters.read(agent.global_step)
        remaining = counters.read(agent.target_steps) - step
        n_vec = max(1, min(trainer.chunk, -(-remaining // trainer.n_envs)))
        stats, episodes, steps, stopped = trainer.chunk_fn(tf.constant(n_vec, tf.int32),
                                                           tf.constant(self.audit_next))
        record_episodes(self.stats, episodes)
        if bool(stopped.numpy()):  # the loop audits this batch, then agent.train updates on it
            self.audit_next = False
            return Collected(int(steps.numpy()), batch=trainer.sample_fn())
        stats = {k: v.numpy() for k, v in stats.items()}
        return Collected(int(steps.numpy()), metrics=stats if metrics.ran(stats) else None)
