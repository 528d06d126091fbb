"""The compiled steps of the off-policy agents: act, update (all gradient steps of one
update; one gradient step is `phases()` run by rl_sever.core.learner), update-and-act, and the
training API the loop and the collectors call. Mixed into OffPolicyAgent (rl_sever.offpolicy.agent).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from rl_sever.core import metrics
from rl_sever.core.compiled import FastCall, per_agent, plain_graph
from rl_sever.core.learner import Learner, Phase
from rl_sever.core.registry import is_shipped
from rl_sever.offpolicy.replay import Transitions


class OffPolicyUpdate:
    """Compiled steps and the training API, mixed into OffPolicyAgent."""

    def _compile(self) -> None:
        cfg = self.config
        G, B = cfg.updates_per_call(), cfg.batch_size
        obs = self.layout.obs_spec()
        # One update's Transitions: [gradient steps, batch, ...]; the single-step fields only
        # when auxiliary losses need them under n-step returns.
        batch_spec = Transitions.spec(self.layout, (G, B), self._one_step and
                                      ("step_rewards", "step_next_obs"))
        env_obs = self.layout.obs_spec((cfg.n_envs,))
        # Public: raw observations -> actions in env units (predict, evaluation, export).
        # The shipped algorithms branch on tensors with tf.cond / tf.while_loop: traced as
        # written, without AutoGraph's rewriting of every function they call (SAC's first
        # update: 1.0-1.5 s of a 2-4 s trace). A user's algorithm class keeps AutoGraph.
        ag = not is_shipped(type(self))
        self.act_fn = per_agent(tf.function(
            lambda o: self._to_env(self._act_unit(o, self.next_seed())),
            input_signature=[obs], autograph=ag))
        self.greedy_fn = per_agent(tf.function(lambda o: self._to_env(self._greedy_unit(o)),
                                               input_signature=[obs], autograph=ag))
        # Internal, for the collector: unit actions ([-1, 1]) as stored in the replay buffer.
        # Fixed input signatures: these never retrace; they are traced on first use.
        jit = self.jit_compile  # resolved with the optimizers (rl_sever.offpolicy.agent)
        self.compiled = {name: per_agent(fn) for name, fn in {
            "act": tf.function(lambda o: self._act_unit(o, self.next_seed()), jit_compile=jit,
                               input_signature=[env_obs], autograph=ag),
            "update": tf.function(self._update, jit_compile=jit, input_signature=[batch_spec],
                                  autograph=ag),
            "update_act": tf.function(self._update_and_act, jit_compile=jit,
                                      input_signature=[batch_spec, env_obs], autograph=ag),
        }.items()}
        self._concrete: dict = {}

    def _fn(self, name: str):
        # Called once per env step or update: skip tf.function's dispatch (rl_sever.core.compiled).
        if name not in self._concrete:
            self._concrete[name] = FastCall(self.compiled[name])
        return self._concrete[name]

    def _build_learner(self) -> None:
        self.learner = Learner(self.optimizers, lambda g: [t.name for t in self.terms_of(g)],
                               lambda term: self.loss_weights[term])

    def phases(self) -> list[Phase]:
        """The gradient step (rl_sever.core.learner): the critic phase (critic and auxiliary
        terms), then the actor phase (actor and, where present, alpha groups) with the Polyak
        target update, every `policy_delay` critic steps. Read when the step is traced (the
        terms' metric keys are known by then)."""
        groups = tuple(g for g in ("actor", "alpha") if self.group_available(g))
        return [Phase(("critic",), self.critic_terms),
                Phase(groups, self.actor_terms,
                      keys=(*self.metric_keys(*groups), *self.train_metric_keys),
                      every=self.policy_delay, after=self.update_targets)]

    def update_targets(self) -> None:
        for online, target in self.target_pairs():
            self.polyak(online, target)

    def _gradient_step(self, mb) -> dict[str, tf.Tensor]:
        # n_updates counts critic updates (the actor phase reads it for policy_delay, as SB3).
        self.n_updates.assign_add(1)
        return self.learner.step(self.phases(), mb, self.next_seed(), self.n_updates)

    def all_metric_keys(self) -> list[str]:
        """Every raw key of the compiled update's metrics."""
        groups = ["critic", "actor", *(["alpha"] if self.group_available("alpha") else [])]
        return self.metric_keys(*groups) + list(self.train_metric_keys)

    def _update(self, batch: Transitions) -> dict[str, tf.Tensor]:
        """All gradient steps of one update; returns their raw metrics (rl_sever.core.metrics)."""
        total = metrics.skipped(self.all_metric_keys())
        steps = batch.rewards.shape[0]
        if steps <= 1:
            for i in range(steps):
                total = metrics.add(total, plain_graph(self._gradient_step)(batch.map(
                    lambda v: v[i])))  # noqa: B023
            return total

        def body(i, total):  # the loop AutoGraph made of `for i in tf.range(steps)`
            step = plain_graph(self._gradient_step)(batch.map(lambda v: v[i]))
            return i + 1, metrics.add(total, step)

        _, total = tf.while_loop(lambda i, _: i < steps, body, (tf.constant(0), total),
                                 maximum_iterations=steps)
        return total

    def _update_and_act(self, batch: Transitions, obs: tf.Tensor):
        stats = self._update(batch)
        with tf.control_dependencies(tf.nest.flatten(stats)):
            actions = self._act_unit(obs, self.next_seed())
        return stats, actions

    def polyak(self, online: list, target: list) -> None:
        """target <- (1 - tau) * target + tau * online, variable by variable (in place)."""
        tau = self.config.tau
        for s, t in zip(online, target):
            t.assign((1.0 - tau) * t + tau * tf.cast(s, t.dtype))

    # -- training API used by the loop and the collector ---------------------------------------
    def sample_batch(self) -> Transitions:
        """[updates_per_call, batch_size, ...] arrays sampled uniformly from the replay buffer."""
        if self.ingraph is not None:
            return self.ingraph.sample_fn().map(lambda v: v.numpy())
        G, B = self.config.updates_per_call(), self.config.batch_size
        flat = self.replay.sample(G * B, one_step=self._one_step)
        return Transitions(*(_leading(v, G, B) for v in flat))

    def act_unit(self, obs: np.ndarray) -> np.ndarray:
        """Exploration actions in [-1, 1] for the vector env's current observations."""
        return self._fn("act")(obs).numpy()

    def update(self, batch: Transitions) -> dict[str, np.ndarray]:
        """Run one update (all its gradient steps); returns its raw metrics."""
        out = self._fn("update")(Transitions.of(batch))
        return {k: v.numpy() for k, v in out.items()}

    def update_and_act(self, batch: Transitions, obs: np.ndarray):
        """`update`, then exploration actions for `obs` from the updated policy: one call."""
        stats, actions = self._fn("update_act")(batch, obs)
        return {k: v.numpy() for k, v in stats.items()}, actions.numpy()

    def train(self, batch) -> dict[str, float]:
        """One update on a sampled batch; returns metrics keyed by TensorBoard name."""
        take = getattr(self._collector, "first_update_obs", None)
        obs = take(batch) if take is not None else None
        if obs is None:
            return self.logged_metrics(self.update(batch))
        # The collector's first update: the same call as every later one, which also acts
        # (the seeds are drawn in the same order as an update, then an act call).
        stats, self._collector.next_actions = self.update_and_act(batch, obs)
        return self.logged_metrics(stats)

    def state_metrics(self) -> dict[str, float]:
        return {"train/n_updates": float(self.n_updates.numpy())}


def _leading(field, G: int, B: int):
    """A sampled field's [G * B, ...] arrays as [G, B, ...] (a Dict observation key by key; an
    absent field stays ()). Per update, so no tf.nest walk (tens of microseconds each)."""
    if isinstance(field, dict):
        return {k: v.reshape(G, B, *v.shape[1:]) for k, v in field.items()}
    if isinstance(field, tuple):
        return field
    return field.reshape(G, B, *field.shape[1:])
