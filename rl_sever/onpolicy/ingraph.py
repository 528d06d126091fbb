"""In-graph on-policy training on TF-native environments (``tf:<id>`` env ids): a whole
iteration (the rollout through core.ingraph_env.drive, then GAE and every epoch of
``agent._train``) as one compiled call. The first iteration of a fresh run first collects its
rollout alone for the loop's audit, puts the envs and the sampler back, and runs the fused
call, which collects the same rollout again: the update is traced once, in the fused call. What
is compiled and why: docs/ingraph.md.
"""

from __future__ import annotations

import tensorflow as tf

from rl_sever.core.collected import Collected
from rl_sever.core.compiled import per_agent
from rl_sever.core.ingraph_env import InGraphEnvState, TFEnvCollector, drive, record_episodes
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
        # A recurrent policy's state between vector steps and iterations (checkpointed with the
        # env state: a resume continues the episodes with their memory).
        self.memory = (tf.Variable(tf.zeros([self.n_envs, agent.layout.state_dim]),
                                   trainable=False, name="memory") if agent.recurrent else None)
        # Traced as written (explicit tf.while_loop, as the update and the off-policy chunk):
        # AutoGraph's conversion of every function the iteration calls took seconds of its
        # first call (tf: CartPole, 64 envs).
        self.rollout_fn = per_agent(tf.function(self._rollout, input_signature=[],
                                                autograph=False))
        self._iterations = {}  # with XLA or not (rl_sever.onpolicy.xla): each traced once
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
            if not agent.recurrent:
                actions, log_prob, value = agent._behave(obs)
                return actions, self._env_action(actions), {"log_prob": log_prob, "value": value}
            state = self.memory.read_value()
            actions, log_prob, value, new_state = agent._behave(obs, state)
            self.memory.assign(new_state)
            return actions, self._env_action(actions), {"log_prob": log_prob, "value": value,
                                                         "state": state}

        def record(i, step, rows):
            if agent.recurrent:  # an episode that ended starts the next one without memory
                done = (step.terminated | step.truncated)[:, None]
                self.memory.assign(tf.where(done, tf.zeros_like(self.memory), self.memory))
            return tf.nest.map_structure(lambda r, x: r.write(i, x), rows, Rollout.row(step)), False

        _, rows, episodes = drive(self.env, self.state, T, T, act, record, rows)
        return rows.map(lambda r: r.stack()), episodes

    def _rollout_state(self) -> list[tf.Variable]:
        """What a rollout moves: the envs' state, the sampler's seed counter, a recurrent
        policy's memory."""
        memory = [self.memory] if self.memory is not None else []
        return [*self.state.variables, self.agent.seed_counter, *memory]

    def audit_rollout(self):
        """The rollout the next iteration will collect, with the envs and the sampler put
        back afterwards (the fused iteration collects it again and trains on it)."""
        kept = [(v, v.numpy().copy()) for v in self._rollout_state()]
        batch, _ = self.rollout_fn()  # its episodes are the next iteration's: not recorded
        for v, value in kept:
            v.assign(value)
        return batch

    def traced(self) -> bool:
        """Whether a fused iteration (with XLA or without) has been traced."""
        return any(f.experimental_get_tracing_count() for f in self._iterations.values())

    @property
    def iteration_fn(self):
        """The fused iteration, compiled with XLA where this learn() call's updates are."""
        xla = self.agent.uses_xla()
        if xla not in self._iterations:
            def iteration():
                with self.agent.tracing(xla):
                    batch, episodes = self._rollout()
                    return self.agent._train(*batch), episodes

            self._iterations[xla] = per_agent(tf.function(
                iteration, input_signature=[], jit_compile=xla, autograph=False))
        return self._iterations[xla]


class InGraphCollector(TFEnvCollector):
    """The training loop's collector for TF-native envs (see the module docstring). The first
    iteration of a fresh run hands the loop its rollout to audit and the fused call to train on
    it (rl_sever.core.loop.Collected.update)."""

    def __init__(self, agent):
        super().__init__(agent, fresh=int(agent.global_step.numpy()) == 0)

    def collect(self) -> Collected:
        trainer = self.trainer
        self.start()
        steps = trainer.n_steps * trainer.n_envs
        if self.audit_next:
            self.audit_next = False
            return Collected(steps, batch=trainer.audit_rollout(), update=self._iterate)
        return Collected(steps, metrics=self._iterate())

    def _iterate(self):
        trainer = self.trainer
        metrics, episodes = trainer.agent.compiled_call(lambda: trainer.iteration_fn())
        record_episodes(self.stats, episodes)
        return metrics
