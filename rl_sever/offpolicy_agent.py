"""Shared off-policy actor-critic: encoder, critics, targets, replay, the compiled update, the
flow contract. SAC and TD3 (agents/) supply the actor, the TD target and the actor step.

One gradient step, top to bottom:
  critic side: critic loss (+ weighted auxiliary losses) -> critic optimizer over the critics,
               the auxiliary modules' own networks, and the encoder if critic/aux may train it;
  actor side:  actor loss (SAC: + entropy-coefficient loss) -> actor optimizer over the actor,
               and the encoder if the actor may train it;
  targets:     Polyak averaging, outside every optimizer and every tape.
Each loss has its own tape that watches exactly the variables its optimizer updates
(isolation by construction), and every cut the audit can see goes through `sever`.

All gradient steps of an update, and the next action, run in one compiled call; the
collector (rl_sever.offpolicy_collector) gathers the sampled batches in NumPy.
"""

from __future__ import annotations

import warnings

import numpy as np
import tensorflow as tf

from rl_sever.agent import Agent
from rl_sever.audit import Flow, FlowContract
from rl_sever.auxiliary import AuxContext, AuxiliarySet, initial_weights
from rl_sever.compiled import FastCall, plain_graph
from rl_sever.encoders import flat_obs, is_image, make_encoder
from rl_sever.errors import ConfigError, UnsupportedSpaceError
from rl_sever.ingraph import tfnative_env
from rl_sever.isolation import sever
from rl_sever.loss_terms import binding
from rl_sever.loss_terms.evaluate import evaluate_term
from rl_sever.loss_terms.outputs import Outputs
from rl_sever.loss_terms.term import LossTerm, Objective
from rl_sever.offpolicy_networks import polyak_update, tf_variables
from rl_sever.offpolicy_settings import OffPolicyConfig
from rl_sever.optim import ModuleOptimizer
from rl_sever.replay import ReplayBuffer, load_replay_for, save_replay_with
from rl_sever.schedules import Scheduled

_SEEDS_PER_STEP = 16  # sub-seeds available to one gradient step (see `_step_seed`)
GROUPS = ("critic", "actor", "alpha")  # optimizer groups; a term trains exactly one of them
# The default terms keep their SB3-style keys (every term is also logged as loss/<name>).
TRAIN_NAMES = {"critic": "train/critic_loss", "actor": "train/actor_loss",
               "alpha": "train/ent_coef_loss"}


def evaluate(term: LossTerm, mb, out) -> tf.Tensor:
    """A term's value (its extra metrics are not logged by the off-policy agents)."""
    try:
        value, _ = evaluate_term(term, mb, out)
    except ConfigError:
        raise
    except Exception as e:  # the user's code: name the term, keep the cause
        raise ConfigError(f"loss term '{term.name}' failed: {type(e).__name__}: {e}") from e
    return tf.debugging.check_numerics(value, f"loss term '{term.name}'")


class OffPolicyAgent(Agent):
    """Base of SAC and TD3. Subclasses implement `_build_policy`, `td_target`,
    `default_objective`, `actor_outputs`, `_act_unit`, `_greedy_unit`, `actor_step` and name
    their metrics.

    The objective (`agent.objective`, rl_sever.loss_terms) holds named terms; each trains one
    optimizer group (critic / actor / alpha), picked by the group module in its `trains` set.
    `losses`: loss edits applied after config.losses (spec strings, LossTerms, Objectives).
    """

    config_cls = OffPolicyConfig
    mode = "off_policy"

    def __init__(self, env, config=None, *, losses=None, **kwargs):
        self._loss_edits = list(losses or [])
        super().__init__(env, config, **kwargs)

    # -- subclass hooks ---------------------------------------------------------------------
    def _build_policy(self, feature_dim: int) -> None:
        """Create self.actor, self.critic, self.target_critic (+ anything else)."""
        raise NotImplementedError

    def td_target(self, mb, next_features, seed) -> tf.Tensor:
        """The (severed) TD target y of the critic loss, shape [batch]."""
        raise NotImplementedError

    def critic_loss(self, q: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        """q: [members, batch, 1] online Q-values; y: [batch] severed target."""
        return tf.add_n([tf.reduce_mean(tf.square(q[m, :, 0] - y)) for m in range(q.shape[0])])

    def default_objective(self) -> Objective:
        """The agent's own terms (SAC: actor, critic, alpha; TD3: actor, critic)."""
        return Objective([self.critic_term()])

    def critic_term(self) -> LossTerm:
        return LossTerm("critic", lambda b, o: o.agent.critic_loss(o["q"], o["target"]),
                        trains=lambda a: a.group_modules("critic", {"critic"}),
                        description="TD error of every critic member to the severed target")

    def actor_outputs(self, mb, seed) -> tuple[dict, dict[str, tf.Tensor]]:
        """Thunks of the actor-side forward outputs, and extra metrics (e.g. ent_coef)."""
        raise NotImplementedError

    def actor_terms(self, mb, seed) -> tuple[dict[str, tf.Tensor], dict[str, tf.Tensor]]:
        """Actor-side losses (actor and alpha groups) by name and extra metrics."""
        thunks, extras = self.actor_outputs(mb, seed)
        out = Outputs(self, thunks)
        terms = {t.name: evaluate(t, mb, out) for t in self.terms_of("actor", "alpha")}
        return terms, extras

    def actor_step(self, mb, seed) -> tuple[tf.Tensor, tf.Tensor]:
        """Update the actor side and the targets; returns (metric values, metric counts)."""
        raise NotImplementedError

    def metric_names(self) -> list[str]:
        """TensorBoard names of the entries of the metric vectors (train/..., loss/...)."""
        return self.term_metric_names("critic") + self._aux_metric_names()

    def term_metric_names(self, group: str) -> list[str]:
        return [TRAIN_NAMES.get(t.name, f"loss/{t.name}") for t in self.terms_of(group)]

    def policy_modules(self) -> dict[str, list]:
        """Actor-side modules besides 'actor' (e.g. SAC's 'alpha')."""
        return {}

    def extra_optimizers(self) -> dict[str, ModuleOptimizer]:
        """Optimizers besides critic and actor (e.g. SAC's entropy coefficient)."""
        return {}

    def target_variables(self) -> list:
        out = list(self.target_critic.weights)
        if self.target_encoder is not None:
            out += self.target_encoder.weights
        return out

    # -- construction -----------------------------------------------------------------------
    def _build(self) -> None:
        cfg = self.config
        act = self.action
        if act.kind != "box":
            raise UnsupportedSpaceError(
                f"{type(self).__name__} needs a Box action space, got {act.kind}"
            )
        if not (np.all(np.isfinite(act.low)) and np.all(np.isfinite(act.high))):
            raise UnsupportedSpaceError(
                f"{type(self).__name__} needs finite action bounds "
                f"(got low={act.low}, high={act.high})"
            )
        # The policy acts in [-1, 1]^A (tanh); the env sees mid + half * a.
        self.action_mid = ((act.high + act.low) / 2).astype(np.float32)
        self.action_half = ((act.high - act.low) / 2).astype(np.float32)
        self.action_dim = int(np.prod(act.shape))
        net = cfg.network
        self.encoder = self.target_encoder = None
        shared = net.shared_encoder or is_image(self.obs_shape, self.obs_dtype)
        if cfg.aux and not shared:
            raise ConfigError(
                "auxiliary losses need a shared encoder: set "
                "network.shared_encoder: true (image observations always have one)"
            )
        if shared:
            self.encoder = make_encoder(
                self.obs_shape,
                self.obs_dtype,
                net.encoder,
                sizes=net.encoder_sizes,
                activation=net.activation,
                channels=net.cnn_channels,
                feature_dim=net.feature_dim,
                name="encoder",
            )
            self.target_encoder = self.encoder.copy("target_encoder")
            feature_dim = self.encoder.out_dim
        else:
            feature_dim = int(np.prod(self.obs_shape))
        self.grad_from = net.grad_from if self.encoder is not None else frozenset()
        self.aux = AuxiliarySet(
            cfg.aux, feature_dim, self.obs_shape, self.obs_dtype, act, cfg.auxiliary
        )
        self.learning_rate = tf.Variable(cfg.learning_rate, trainable=False, name="learning_rate")
        self._build_policy(feature_dim)
        self.schedules = {
            "learning_rate": Scheduled(self.learning_rate, cfg.lr_schedule, cfg.learning_rate)
        }
        self._build_objective()
        self.schedules.update(binding.weight_schedules(self._objective))
        self.loss_weights = {
            **{t.name: t.weight for t in self._objective},
            **initial_weights(cfg.aux, cfg.aux_weights),
        }
        self.optimizers = {
            "critic": self.make_optimizer(self.critic_side_modules(), "critic_optimizer"),
            "actor": self.make_optimizer(self.actor_side_modules(), "actor_optimizer"),
            **self.extra_optimizers(),
        }
        self.n_updates = tf.Variable(0, dtype=tf.int64, trainable=False, name="n_updates")
        self.seed_counter = tf.Variable(0, dtype=tf.int64, trainable=False, name="seed_counter")
        self._one_step = cfg.n_step > 1 and self.aux.needs_transitions
        # A TF-native env: act, step, store and update run in compiled chunks with the replay
        # buffer in tf.Variables (rl_sever.ingraph_offpolicy); otherwise a NumPy buffer.
        tf_env = tfnative_env(self.env)
        if tf_env is None:
            self.replay = ReplayBuffer(
                cfg.buffer_size,
                cfg.n_envs,
                self.obs_shape,
                self.obs_dtype.as_numpy_dtype,
                act.shape,
                np.float32,
                n_step=cfg.n_step,
                gamma=cfg.gamma,
                seed=cfg.seed,
            )
        self._compile()
        self.ingraph = None
        if tf_env is not None:
            from rl_sever.ingraph_offpolicy import InGraphOffPolicyTrainer

            self.ingraph = InGraphOffPolicyTrainer(self, tf_env)
            self.replay = self.ingraph.replay
        if self.config.losses or self._loss_edits:
            self._probe_terms()

    # -- the objective --------------------------------------------------------------------------
    def _build_objective(self) -> None:
        objective = self.default_objective()
        for edit in [*self.config.losses, *self._loss_edits]:
            objective.apply(edit)
        groups: dict[str, list[LossTerm]] = {g: [] for g in GROUPS}
        for term in objective:
            if term.name in self.aux:
                raise ConfigError(f"loss term '{term.name}' has the name of an auxiliary loss")
            if term.build(self):
                raise ConfigError(f"loss term '{term.name}' builds its own modules: the "
                                  f"off-policy agents do not support that yet")
            groups[self.group_of(term)].append(term)
        for g in ("critic", "actor", *(["alpha"] if self.group_available("alpha") else [])):
            if not groups[g]:
                raise ConfigError(f"the objective of {self.algo} needs at least one term in the "
                                  f"'{g}' group (terms: {', '.join(objective.names) or 'none'})")
        self._objective, self._groups = objective, groups
        objective._listener = self._objective_changed

    def _objective_changed(self, kind: str) -> None:
        if kind == "check":
            raise ConfigError("the off-policy agents build their optimizers and compiled update "
                              "for their terms: add, remove or replace terms with the `losses` "
                              "constructor argument or config key; weights can change any time "
                              "(objective.set_weight)")
        self.schedules.update(binding.weight_schedules(self._objective))

    @property
    def objective(self) -> Objective:
        """The named, weighted loss terms (rl_sever.loss_terms); weights editable any time."""
        return self._objective

    def group_available(self, group: str) -> bool:
        return group in ("critic", "actor") or group in self.policy_modules()

    def group_optimizer_modules(self, group: str) -> set[str]:
        if group == "critic":
            return set(self.critic_side_modules())
        if group == "actor":
            return set(self.actor_side_modules())
        return set(self.policy_modules()) if group == "alpha" else set()

    def group_modules(self, group: str, base: set[str]) -> set[str]:
        """`base` plus the shared encoder when the losses of `group` may train it (the default
        terms' contracts; custom terms may use it: trains=lambda a: a.group_modules(...))."""
        source = "critic" if group == "critic" else "actor"
        enc = self.encoder is not None and group != "alpha" and self.trains_encoder(source)
        return set(base) | ({"encoder"} if enc else set())

    def group_of(self, term: LossTerm) -> str:
        """The optimizer group of a term: the one of critic / actor / alpha it trains."""
        must = set(term.flow(self).must)
        found = [g for g in GROUPS if g in must]
        if len(found) != 1:
            raise ConfigError(
                f"loss term '{term.name}' must train exactly one of the modules "
                f"{', '.join(GROUPS[:2 + self.group_available('alpha')])} (that picks its "
                f"optimizer); it declares trains={sorted(must)}")
        g = found[0]
        allowed = self.group_optimizer_modules(g)
        if not self.group_available(g) or not must <= allowed:
            raise ConfigError(
                f"loss term '{term.name}' trains {sorted(must)}, but the '{g}' optimizer of "
                f"{self.algo} updates {sorted(allowed) or 'nothing'} with this config")
        return g

    def _probe_terms(self) -> None:
        """Evaluate every term once, eagerly, on a tiny all-zero batch: a term that fails, reads
        an output the agent lacks or does not return a scalar is a ConfigError naming it, at
        construction. A fixed seed; no variable changes."""
        zeros = {"obs": tf.zeros([2, *self.obs_shape], self.obs_dtype),
                 "next_obs": tf.zeros([2, *self.obs_shape], self.obs_dtype),
                 "actions": tf.zeros([2, self.action_dim]),
                 **{k: tf.zeros([2]) for k in ("rewards", "terminated", "discounts")}}
        seed = tf.constant([self.config.seed % 2**31, 2**31 - _SEEDS_PER_STEP], tf.int32)
        self.critic_terms(zeros, seed)  # evaluates the critic group's terms
        self.actor_terms(zeros, seed)  # and the actor and alpha groups'

    def terms_of(self, *groups: str) -> list[LossTerm]:
        return [t for g in groups for t in self._groups[g]]

    def make_optimizer(self, modules: dict[str, list], name: str) -> ModuleOptimizer:
        """Adam (SB3's eps) over `modules`, sharing the scheduled learning rate."""
        clip = self.config.max_grad_norm if self.config.max_grad_norm > 0 else None
        return ModuleOptimizer(
            modules, learning_rate=self.learning_rate, epsilon=1e-8, max_grad_norm=clip, name=name
        )

    def critic_side_modules(self) -> dict[str, list]:
        mods = {"critic": self.critic.weights}
        if self.encoder is not None and self.grad_from & {"critic", "aux"}:
            mods["encoder"] = self.encoder.weights
        mods.update(self.aux.modules())
        return mods

    def actor_side_modules(self) -> dict[str, list]:
        mods = {"actor": self.actor.weights}
        if self.encoder is not None and "actor" in self.grad_from:
            mods["encoder"] = self.encoder.weights
        return mods

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
            lambda o: self._to_env(self._act_unit(o, self._next_seed())), input_signature=[obs]
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
                lambda o: self._act_unit(o, self._next_seed()),
                jit_compile=jit,
                input_signature=[env_obs],
            ),
            "update": tf.function(self._update, jit_compile=jit, input_signature=batch_spec),
            "update_act": tf.function(
                self._update_and_act, jit_compile=jit, input_signature=[*batch_spec, env_obs]
            ),
        }
        self._concrete: dict = {}
        self.next_actions: tuple | None = None  # (obs, unit actions computed for that obs)

    def _fn(self, name: str):
        # Called once per env step or update: skip tf.function's dispatch (rl_sever.compiled).
        if name not in self._concrete:
            self._concrete[name] = FastCall(self.compiled[name])
        return self._concrete[name]

    def trackables(self) -> dict:
        out = {
            "actor": self.actor,
            "critic": self.critic,
            "target_critic": self.target_critic,
            "optimizers": self.optimizers,
            "loss_weights": self.loss_weights,
            "learning_rate": self.learning_rate,
            "n_updates": self.n_updates,
            "seed_counter": self.seed_counter,
        }
        if self.encoder is not None:
            out.update(encoder=self.encoder, target_encoder=self.target_encoder)
        if self.aux:
            out["aux"] = self.aux
        if self.ingraph is not None:  # env state, update phase and (save_replay) the buffer
            out.update(self.ingraph.trackables())
        return out

    def make_collector(self):
        if self.ingraph is not None:
            from rl_sever.ingraph_offpolicy import InGraphOffPolicyCollector

            return InGraphOffPolicyCollector(self)
        from rl_sever.offpolicy_collector import OffPolicyCollector

        return OffPolicyCollector(self)

    # -- helpers used inside the compiled steps ------------------------------------------------
    def _next_seed(self) -> tf.Tensor:
        """A fresh stateless seed: (config seed, checkpointed counter). XLA-friendly."""
        count = self.seed_counter.assign_add(1) % (2**31 // _SEEDS_PER_STEP)
        # int32: what tf.random.stateless_* and tensorflow-probability both accept.
        return tf.cast(
            tf.stack([tf.constant(self.config.seed % 2**31, tf.int64), count * _SEEDS_PER_STEP]),
            tf.int32,
        )

    @staticmethod
    def _sub_seed(seed: tf.Tensor, k: int) -> tf.Tensor:
        return seed + tf.constant([0, k], tf.int32)

    def _to_env(self, unit_actions: tf.Tensor) -> tf.Tensor:
        return self.action_mid + self.action_half * unit_actions

    def to_env(self, unit_actions: np.ndarray) -> np.ndarray:
        return self.action_mid + self.action_half * unit_actions

    def features(self, obs: tf.Tensor) -> tf.Tensor:
        """Encoder output (live), or the flattened observation when there is no encoder."""
        return self.encoder(obs) if self.encoder is not None else flat_obs(obs)

    def target_features(self, obs: tf.Tensor) -> tf.Tensor:
        return self.target_encoder(obs) if self.target_encoder is not None else flat_obs(obs)

    def trains_encoder(self, source: str) -> bool:
        return source in self.grad_from

    def features_for(self, source: str, feat: tf.Tensor) -> tf.Tensor:
        """`feat` as the losses of `source` may see them: live if that source trains the
        encoder, otherwise severed (its loss cannot move the encoder)."""
        return feat if self.trains_encoder(source) else sever(feat)

    # -- losses -----------------------------------------------------------------------------
    def critic_terms(self, mb, seed) -> tuple[dict[str, tf.Tensor], dict[str, tf.Tensor]]:
        """Critic loss and auxiliary losses by name, and their logged components."""
        feat = self.features(mb["obs"])
        next_cache: dict[str, tf.Tensor] = {}

        def next_features():  # online encoder on next_obs, computed at most once
            if "f" not in next_cache:
                next_cache["f"] = self.features(mb["next_obs"])
            return next_cache["f"]

        y = self.td_target(mb, next_features, self._sub_seed(seed, 0))
        critic_feat = self.features_for("critic", feat)
        q = self.critic(tf.concat([critic_feat, mb["actions"]], -1))
        out = Outputs(self, {"q": lambda: q, "target": lambda: y,
                             "features": lambda: critic_feat})
        terms = {t.name: evaluate(t, mb, out) for t in self.terms_of("critic")}
        extras: dict[str, tf.Tensor] = {}
        if self.aux:
            one_step_next = "step_next_obs" not in mb

            def encode(obs):
                f = (
                    next_features()
                    if one_step_next and obs is mb["next_obs"]
                    else self.features(obs)
                )
                return self.features_for("aux", f)

            ctx = AuxContext(mb, self.features_for("aux", feat), encode, self._sub_seed(seed, 1))
            aux_terms, extras = self.aux.losses(ctx)
            terms.update(aux_terms)
        return terms, extras

    def loss_terms(self, mb, seed=None) -> dict[str, tf.Tensor]:
        """Every named loss on one batch with the current parameters (no update): the audit's."""
        if seed is None:  # a fixed seed outside the training stream: auditing changes nothing
            seed = tf.constant([self.config.seed % 2**31, 2**31 - _SEEDS_PER_STEP], tf.int32)
        critic, _ = self.critic_terms(mb, seed)
        actor, _ = self.actor_terms(mb, self._sub_seed(seed, 8))
        return {**critic, **actor}

    # -- the compiled update ------------------------------------------------------------------
    def _critic_step(self, mb, seed) -> tuple[tf.Tensor, tf.Tensor]:
        opt = self.optimizers["critic"]
        watched = tf_variables(opt.all_variables)
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(watched)
            terms, extras = self.critic_terms(mb, seed)
            total = tf.add_n([self.loss_weights[k] * v for k, v in terms.items()])
            total = tf.debugging.check_numerics(total, "critic-side loss")
        opt.apply(tape.gradient(total, watched))
        logged = {**terms, **extras}
        values = [terms[t.name] for t in self.terms_of("critic")]
        values += [logged[k] for k in self.aux.metric_keys()]
        return tf.stack(values), tf.ones([len(values)])

    def _gradient_step(self, mb) -> tuple[tf.Tensor, tf.Tensor]:
        self.n_updates.assign_add(1)
        seed = self._next_seed()
        c_vals, c_counts = self._critic_step(mb, seed)
        a_vals, a_counts = self.actor_step(mb, self._sub_seed(seed, 8))
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
            actions = self._act_unit(args[-1], self._next_seed())
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
        """One update on a sampled batch, or the metrics of updates the collector already ran."""
        from rl_sever.offpolicy_collector import UpdateSummary

        if isinstance(batch, UpdateSummary):
            stats = batch.stats
        elif self.ingraph is None and self._obs is not None and len(self._obs) == self.config.n_envs:
            # Also act for the env's current observation (one compiled function for every
            # update of a run); the collector uses these actions for its next step.
            stats, actions = self.update_and_act(batch, self._obs)
            self.next_actions = (self._obs, actions)
        else:
            stats = self.update(batch)
        return self.format_metrics(stats)

    def format_metrics(self, stats: np.ndarray) -> dict[str, float]:
        names = self.metric_names()
        n = len(names)
        sums, counts = stats[:n], stats[n:]
        out = {k: float(s / c) for k, s, c in zip(names, sums, counts) if c > 0}
        for name, key in TRAIN_NAMES.items():  # every term as loss/<name>, the defaults too
            if key in out and name in self._objective:
                out[f"loss/{name}"] = out[key]
        out["train/n_updates"] = float(self.n_updates.numpy())
        return out

    def _aux_metric_names(self) -> list[str]:
        return [f"loss/{k}" for k in self.aux.metric_keys()]

    def has_updated(self) -> bool:
        return int(self.n_updates.numpy()) > 0

    def module_optimizers(self) -> list[ModuleOptimizer]:
        return list(self.optimizers.values())

    def set_frozen(self, module: str, frozen: bool = True) -> None:
        """Freeze/unfreeze `module` in every optimizer that updates it (the encoder may be in two)."""
        found = [opt for opt in self.optimizers.values() if module in opt.frozen]
        if not found:
            names = sorted({m for opt in self.optimizers.values() for m in opt.module_names})
            raise ConfigError(f"no optimizer updates module '{module}'; modules: {names}")
        for opt in found:
            opt.set_frozen(module, frozen)

    # -- gradient-flow audit ----------------------------------------------------------------
    def flow_modules(self) -> dict[str, list]:
        mods = {"actor": self.actor.weights, "critic": self.critic.weights}
        if self.encoder is not None:
            mods["encoder"] = self.encoder.weights
        mods.update(self.aux.modules())
        mods.update(self.policy_modules())
        mods["targets"] = self.target_variables()
        return mods

    def flow_losses(self, batch) -> dict:
        mb = {k: tf.convert_to_tensor(np.asarray(batch[k])[0]) for k in self.batch_keys}
        return {name: (lambda name=name: self.loss_terms(mb)[name]) for name in self.loss_names()}

    def loss_names(self) -> list[str]:
        return [*self._objective.names, *self.aux]

    def flow_contract(self) -> FlowContract:
        flows: dict[str, Flow] = {t.name: t.flow(self) for t in self._objective}
        flows.update(self.aux.flows(self.trains_encoder("aux")))
        return FlowContract(flows)  # "targets" is in no `may` set: nothing may reach them

    # -- checkpoints with the replay buffer -------------------------------------------------------
    def save(self) -> str:
        path = super().save()
        if self.ingraph is None:  # the in-graph buffer is in the TF checkpoint itself
            kept = self.checkpointer.manager.checkpoints
            save_replay_with(self.replay if self.config.save_replay else None, path, kept)
        return path

    def on_restore(self, path: str) -> None:
        """Reload the replay buffer saved with checkpoint `path` (if any)."""
        if self.ingraph is not None:  # restored with the checkpoint (or never saved)
            return
        if not load_replay_for(self.replay, path) and self.config.save_replay:
            warnings.warn(
                f"no replay buffer saved with {path}: training resumes with an empty "
                f"buffer and waits for learning_starts transitions",
                stacklevel=2,
            )
