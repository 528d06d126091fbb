"""The compiled steps of the off-policy agents: act, update (all gradient steps of one
update), update-and-act, and the training API the loop and the collectors call.

One gradient step runs the critic side (critic and auxiliary losses, one tape watching exactly
the critic optimizer's variables), then `actor_step`: the actor and alpha groups (one tape per
optimizer), then the Polyak target update, every `policy_delay` critic steps.
`OffPolicyUpdate` is mixed into OffPolicyAgent (rl_sever.offpolicy.agent).
"""

from __future__ import annotations

import contextlib

import numpy as np
import tensorflow as tf

from rl_sever.core.compiled import FastCall, plain_graph
from rl_sever.nn.dense_stack import polyak_update, tf_variables
from rl_sever.nn.encoders import is_image
from rl_sever.objective.binding import SB3_NAMES


class OffPolicyUpdate:
    """Compiled steps and the training API, mixed into OffPolicyAgent."""

    def _compile(self) -> None:
        cfg = self.config
        G, B = cfg.updates_per_call(), cfg.batch_size
        obs = tf.TensorSpec([None, *self.obs_shape], self.obs_dtype)
        self.batch_keys = ["obs", "actions", "rewards", "next_obs", "terminated", "discounts"]
        if self._one_step:
            self.batch_keys += ["step_rewards", "step_next_obs"]
        shapes = {
            "obs": self.obs_shape,
            "next_obs": self.obs_shape,
            "step_next_obs": self.obs_shape,
            "actions": (self.action_dim,),
        }
        dtypes = {
            "obs": self.obs_dtype,
            "next_obs": self.obs_dtype,
            "step_next_obs": self.obs_dtype,
        }
        batch_spec = [
            tf.TensorSpec([G, B, *shapes.get(k, ())], dtypes.get(k, tf.float32), name=k)
            for k in self.batch_keys
        ]
        env_obs = tf.TensorSpec([cfg.n_envs, *self.obs_shape], self.obs_dtype)
        # Public: raw observations -> actions in env units (predict, evaluation, export).
        self.act_fn = tf.function(
            lambda o: self._to_env(self._act_unit(o, self.next_seed())), input_signature=[obs]
        )
        self.greedy_fn = tf.function(
            lambda o: self._to_env(self._greedy_unit(o)), input_signature=[obs]
        )
        # Internal, for the collector: unit actions ([-1, 1]) as stored in the replay buffer.
        # Fixed input signatures: these never retrace; they are traced on first use.
        jit = cfg.jit_compile
        if jit is None:
            jit = not is_image(self.obs_shape, self.obs_dtype)
        self.jit_compile = bool(jit)
        self.compiled = {
            "act": tf.function(
                lambda o: self._act_unit(o, self.next_seed()),
                jit_compile=jit,
                input_signature=[env_obs],
            ),
            "update": tf.function(self._update, jit_compile=jit, input_signature=batch_spec),
            "update_act": tf.function(
                self._update_and_act, jit_compile=jit, input_signature=[*batch_spec, env_obs]
            ),
        }
        self._concrete: dict = {}

    def _fn(self, name: str):
        # Called once per env step or update: skip tf.function's dispatch (rl_sever.core.compiled).
        if name not in self._concrete:
            self._concrete[name] = FastCall(self.compiled[name])
        return self._concrete[name]

    def _critic_step(self, mb, seed) -> tuple[tf.Tensor, tf.Tensor]:
        opt = self.optimizers["critic"]
        watched = tf_variables(opt.all_variables)
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(watched)
            terms, extras = self.critic_terms(mb, seed)
            total = tf.add_n([self.loss_weights[k] * v for k, v in terms.items()])
            total = tf.debugging.check_numerics(total, "critic-side loss")
        opt.apply(tape.gradient(total, watched))
        values = self.group_values("critic", terms, extras)
        return tf.stack(values), tf.ones([len(values)])

    def actor_step(self, mb, seed) -> tuple[tf.Tensor, tf.Tensor]:
        """The actor side (actor and, where present, alpha groups: one tape per optimizer, each
        watching exactly its variables) and the Polyak target update, every `policy_delay`
        critic steps; returns (metric values, metric counts)."""
        groups = [g for g in ("actor", "alpha") if self.group_available(g)]

        def update():
            watched = {g: tf_variables(self.optimizers[g].all_variables) for g in groups}
            with contextlib.ExitStack() as stack:
                tapes = {g: stack.enter_context(tf.GradientTape(watch_accessed_variables=False))
                         for g in groups}
                for g in groups:
                    tapes[g].watch(watched[g])
                terms, extras = self.actor_terms(mb, seed)
                losses = {g: tf.add_n([self.loss_weights[t.name] * terms[t.name]
                                       for t in self.terms_of(g)]) for g in groups}
            for g in groups:
                self.optimizers[g].apply(tapes[g].gradient(losses[g], watched[g]))
            for online, target in self.target_pairs():
                self.polyak(online, target)
            values = (self.group_values("actor", terms, extras)
                      + [extras[k] for k in self.actor_metrics.values()]
                      + [v for g in groups[1:] for v in self.group_values(g, terms, extras)])
            return tf.stack(values), tf.ones([len(values)])

        if self.policy_delay == 1:
            return update()
        # n_updates counts critic updates (already incremented for this one), as in SB3.
        n = len(self.metric_names()) - len(self.group_metric_names("critic"))
        return tf.cond(self.n_updates % self.policy_delay == 0, update,
                       lambda: (tf.zeros([n]), tf.zeros([n])))

    def _gradient_step(self, mb) -> tuple[tf.Tensor, tf.Tensor]:
        self.n_updates.assign_add(1)
        seed = self.next_seed()
        c_vals, c_counts = self._critic_step(mb, seed)
        a_vals, a_counts = self.actor_step(mb, self.sub_seed(seed, 8))
        return tf.concat([c_vals, a_vals], 0), tf.concat([c_counts, a_counts], 0)

    def _update(self, *batch) -> tf.Tensor:
        """All gradient steps of one update; returns [metric sums..., metric counts...]."""
        data = dict(zip(self.batch_keys, batch))
        n = len(self.metric_names())
        sums, counts = tf.zeros([n]), tf.zeros([n])
        steps = batch[0].shape[0]
        for i in tf.range(steps) if steps > 1 else range(steps):
            vals, cnts = plain_graph(self._gradient_step)({k: v[i] for k, v in data.items()})
            sums += vals * cnts
            counts += cnts
        return tf.concat([sums, counts], 0)

    def _update_and_act(self, *args):
        stats = self._update(*args[:-1])
        with tf.control_dependencies([stats]):
            actions = self._act_unit(args[-1], self.next_seed())
        return stats, actions

    def polyak(self, online: list, target: list) -> None:
        polyak_update(online, target, self.config.tau)

    # -- training API used by the loop and the collector ---------------------------------------
    def sample_batch(self) -> dict[str, np.ndarray]:
        """[updates_per_call, batch_size, ...] arrays sampled uniformly from the replay buffer."""
        cfg = self.config
        if self.ingraph is not None:
            return {k: v.numpy() for k, v in self.ingraph.sample_fn().items()}
        G, B = cfg.updates_per_call(), cfg.batch_size
        flat = self.replay.sample(G * B, one_step=self._one_step)
        return {k: flat[k].reshape(G, B, *flat[k].shape[1:]) for k in self.batch_keys}

    def act_unit(self, obs: np.ndarray) -> np.ndarray:
        """Exploration actions in [-1, 1] for the vector env's current observations."""
        return self._fn("act")(obs).numpy()

    def update(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        """Run one update (all its gradient steps); returns [metric sums, metric counts]."""
        return self._fn("update")(*[batch[k] for k in self.batch_keys]).numpy()

    def update_and_act(self, batch: dict[str, np.ndarray], obs: np.ndarray):
        """`update`, then exploration actions for `obs` from the updated policy: one call."""
        stats, actions = self._fn("update_act")(*[batch[k] for k in self.batch_keys], obs)
        return stats.numpy(), actions.numpy()

    def train(self, batch) -> dict[str, float]:
        """One update on a sampled batch; returns metrics keyed by TensorBoard name."""
        return self.logged_metrics(self.update(batch))

    def logged_metrics(self, stats: np.ndarray) -> dict[str, float]:
        """Summed [metric sums..., metric counts...] of one or more updates -> mean metrics."""
        return self.format_metrics(np.asarray(stats))

    def format_metrics(self, stats: np.ndarray) -> dict[str, float]:
        names = self.metric_names()
        n = len(names)
        sums, counts = stats[:n], stats[n:]
        out = {k: float(s / c) for k, s, c in zip(names, sums, counts) if c > 0}
        for name, key in SB3_NAMES.items():  # every term as loss/<name>, the defaults too
            if key in out and name in self._objective:
                out[f"loss/{name}"] = out[key]
        out["train/n_updates"] = float(self.n_updates.numpy())
        return out
