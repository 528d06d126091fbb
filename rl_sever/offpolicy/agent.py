"""Shared off-policy actor-critic: encoder, critics, targets, replay, the compiled update, the
flow contract; the pages (agents/) supply the actor, the TD target and their terms. One
gradient step (critic group, actor group, Polyak targets outside every tape) is laid out in
docs/offpolicy.md; the grouping is rl_sever.offpolicy.objective, the compiled steps
rl_sever.offpolicy.update.
"""

from __future__ import annotations

import warnings

import numpy as np
import tensorflow as tf

from rl_sever.auxiliary import AuxContext, AuxiliarySet
from rl_sever.config.offpolicy import OffPolicyConfig
from rl_sever.config.schedules import Scheduled
from rl_sever.core.agent import Agent
from rl_sever.core.batch import Layout
from rl_sever.core.ingraph_env import tfnative_env
from rl_sever.core.optim import ModuleOptimizer
from rl_sever.core.resources import bf16_matmuls_pay
from rl_sever.core.threads import small_mlp_on_cpu
from rl_sever.errors import ConfigError, UnsupportedSpaceError
from rl_sever.isolation import sever
from rl_sever.nn.encoders import flat_obs, is_image, make_encoder
from rl_sever.nn.layers import DenseStack, tf_variables
from rl_sever.objective import binding
from rl_sever.objective.outputs import Outputs
from rl_sever.objective.term import LossTerm, Objective
from rl_sever.offpolicy.collector import OffPolicyCollector
from rl_sever.offpolicy.her import make_replay
from rl_sever.offpolicy.host_acting import HostActing
from rl_sever.offpolicy.ingraph import InGraphOffPolicyCollector, InGraphOffPolicyTrainer
from rl_sever.offpolicy.objective import OffPolicyObjective, probe_seed
from rl_sever.offpolicy.replay import (
    Transitions,
    load_replay_for,
    prune_replays,
    replay_dir,
)
from rl_sever.offpolicy.update import OffPolicyUpdate
from rl_sever.runners.collectors import ReplayRunners


class OffPolicyAgent(HostActing, OffPolicyObjective, OffPolicyUpdate, Agent):
    """Base of SAC and TD3. Subclasses implement `_build_policy`, `td_target`,
    `default_objective`, `actor_outputs`, `_act_unit` and `_greedy_unit`; they may set
    `policy_delay`, `train_metric_keys` (actor_outputs extras to log as train/<key>) and
    `target_pairs`. The steps themselves are shared
    (rl_sever.offpolicy.update).

    The objective (`agent.objective`, rl_sever.objective) holds named terms; each trains one
    optimizer group (critic / actor / alpha), picked by the group module in its `trains` set.
    `losses`: loss edits applied after config.losses (spec strings, LossTerms, Objectives).
    """

    config_cls = OffPolicyConfig
    mode = "off_policy"
    collector_classes = (OffPolicyCollector, InGraphOffPolicyCollector, ReplayRunners)

    # -- subclass hooks ---------------------------------------------------------------------
    def _build_policy(self, feature_dim: int) -> None:
        """Create self.actor (+ anything else: SAC's log_alpha, TD3's target actor)."""
        raise NotImplementedError

    def _build_critic(self, feature_dim: int) -> None:
        """n_critics Q-functions of (features, action), batched, and their Polyak target."""
        cfg = self.config
        self.critic = self.mlp(feature_dim + self.action_dim, 1, members=cfg.n_critics,
                               seed=cfg.seed + 1, name="critic")
        self.target_critic = self.critic.copy("target_critic")

    def mlp(self, in_dim: int, out_dim: int, *, seed: int, name: str, members: int = 0) -> DenseStack:
        """An actor or critic body of config.network's hidden sizes and activation, with the
        run's matmul precision (`members` > 0: an ensemble)."""
        net = self.config.network
        return DenseStack(in_dim, net.hidden_sizes, out_dim, net.activation, members=members,
                          seed=seed, hidden_dtype=self.matmul_precision, name=name)

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
        terms, metrics = self.evaluate_group("actor", mb, out)
        alpha_terms, alpha_metrics = self.evaluate_group("alpha", mb, out)
        return {**terms, **alpha_terms}, {**extras, **metrics, **alpha_metrics}

    policy_delay = 1  # actor-side steps (and target updates) every this many critic steps

    def target_pairs(self) -> list[tuple[list, list]]:
        """(online, target) variable lists that Polyak averaging updates after an actor step."""
        pairs = [(self.critic.weights, self.target_critic.weights)]
        if self.encoder is not None:
            pairs.append((self.encoder.weights, self.target_encoder.weights))
        return pairs

    def policy_modules(self) -> dict[str, list]:
        """Actor-side modules besides 'actor' (e.g. SAC's 'alpha')."""
        return {}

    def extra_optimizers(self) -> dict[str, ModuleOptimizer]:
        """Optimizers besides critic and actor (e.g. SAC's entropy coefficient)."""
        return {}

    def target_variables(self) -> list:
        """Every target network's variables (the audit's "targets" column)."""
        return [v for _, target in self.target_pairs() for v in target]

    def auto_intra_op_threads(self) -> int:
        # One intra-op thread for MLP updates on CPU without XLA: the executor then runs their
        # independent matmuls side by side (rl_sever.core.threads). XLA runs one stream and
        # wants the intra-op pool; convolutions split well across cores.
        return 1 if small_mlp_on_cpu(self) and not self.uses_xla() else 0

    def uses_xla(self) -> bool:
        """config.jit_compile; unset, only for a tf: env's in-graph chunk. A Gymnasium run's
        update is faster without XLA (docs/offpolicy.md#speed): the executor runs independent
        ops side by side where XLA runs one stream, and fused Adam kernels apply."""
        jit = self.config.jit_compile
        return bool(tfnative_env(self.env) is not None if jit is None else jit)

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
        # Batches hold the policy's unit actions: float32 [action_dim].
        self.layout = Layout(self.obs_shape, self.obs_dtype, (self.action_dim,), tf.float32)
        net = cfg.network
        self.encoder = self.target_encoder = None
        shared = (net.shared_encoder or self.user_encoder is not None
                  or is_image(self.obs_shape, self.obs_dtype)
                  or isinstance(self.obs_shape, dict))  # a Dict observation: one encoder per key
        if cfg.aux and not shared:
            raise ConfigError(
                "auxiliary losses need a shared encoder: set "
                "network.shared_encoder: true (image observations always have one)"
            )
        if shared:
            self.encoder = make_encoder(self.obs_shape, self.obs_dtype, net.encoder,
                                        user=self.user_encoder, sizes=net.encoder_sizes,
                                        activation=net.activation, channels=net.cnn_channels,
                                        feature_dim=net.feature_dim, name="encoder")
            self.target_encoder = self.encoder.copy("target_encoder")
            feature_dim = self.encoder.out_dim
        else:
            feature_dim = int(np.prod(self.obs_shape))
        self.grad_from = net.grad_from if self.encoder is not None else frozenset()
        self.aux = AuxiliarySet(cfg.aux, feature_dim, self.obs_shape, self.obs_dtype, act,
                                cfg.auxiliary)
        self.learning_rate = tf.Variable(cfg.learning_rate, trainable=False, name="learning_rate")
        tf_env = tfnative_env(self.env)
        self.jit_compile = self.uses_xla()
        self.matmul_precision = net.matmul_precision
        if self.matmul_precision == "auto":
            # bfloat16 only where it was measured faster: AMX or Zen 4, no XLA (whose CPU bfloat16
            # dots are slower than float32), no GPU (not measured).
            fast = (bf16_matmuls_pay() and not self.jit_compile
                    and not tf.config.list_logical_devices("GPU"))
            self.matmul_precision = "bfloat16" if fast else "float32"
        self._build_policy(feature_dim)
        self._build_critic(feature_dim)
        self.schedules = {
            "learning_rate": Scheduled(self.learning_rate, cfg.lr_schedule, cfg.learning_rate)
        }
        self._build_objective()
        self.schedules.update(binding.weight_schedules(self._objective))
        self.loss_weights = {t.name: t.weight for t in self._objective}
        self.optimizers = {
            "critic": self.make_optimizer(self.critic_side_modules(), "critic_optimizer"),
            "actor": self.make_optimizer(self.actor_side_modules(), "actor_optimizer"),
            **self.extra_optimizers(),
        }
        self.n_updates = tf.Variable(0, dtype=tf.int64, trainable=False, name="n_updates")
        self._one_step = cfg.n_step > 1 and self.aux.needs_transitions
        # A TF-native env: act, step, store and update run in compiled chunks with the replay
        # buffer in tf.Variables (rl_sever.offpolicy.ingraph); otherwise a NumPy buffer.
        if tf_env is None:  # with hindsight goals where config her asks (offpolicy.her)
            # Image frames stored once (a Dict observation's image keys too).
            self.replay = make_replay(self, share_frames=is_image(self.obs_shape, self.obs_dtype)
                                      or isinstance(self.obs_shape, dict))
        elif cfg.her.strategy != "none":
            raise ConfigError("her: TF-native (tf:) envs have no goals; use a goal-conditioned "
                              "Gymnasium env")
        self._build_learner()
        self._compile()
        self.ingraph = None
        if tf_env is not None:
            self.ingraph = InGraphOffPolicyTrainer(self, tf_env)
            self.replay = self.ingraph.replay
        if self.config.losses or self._loss_edits or self.aux:
            self._probe_terms()  # also records the metric keys the terms return

    def make_optimizer(self, modules: dict[str, list], name: str) -> ModuleOptimizer:
        """config.optimizer over `modules`, sharing the scheduled learning rate."""
        cfg = self.config
        return ModuleOptimizer(modules, learning_rate=self.learning_rate, kind=cfg.optimizer,
                               epsilon=cfg.adam_eps,
                               max_grad_norm=cfg.max_grad_norm if cfg.max_grad_norm > 0 else None,
                               fused=not self.jit_compile, name=name)

    def critic_side_modules(self) -> dict[str, list]:
        mods = {"critic": self.critic.weights}
        if self.encoder is not None and self.grad_from & {"critic", "aux"}:
            mods["encoder"] = self.encoder.weights
        mods.update(self.aux.modules())
        if hasattr(self, "_groups"):  # the critic-side terms' own networks
            mods.update(self.own_modules("critic"))
        return mods

    def actor_side_modules(self) -> dict[str, list]:
        mods = {"actor": self.actor.weights}
        if self.encoder is not None and "actor" in self.grad_from:
            mods["encoder"] = self.encoder.weights
        if hasattr(self, "_groups"):
            mods.update(self.own_modules("actor"))
        return mods

    def acting_variables(self) -> list:
        return tf_variables([*self.actor.weights,
                             *(self.encoder.weights if self.encoder is not None else [])])

    def trackables(self) -> dict:
        out = {"actor": self.actor, "critic": self.critic, "target_critic": self.target_critic,
               "optimizers": self.optimizers, "learning_rate": self.learning_rate,
               "n_updates": self.n_updates, **self.terms_trackables()}
        if self.encoder is not None:
            out.update(encoder=self.encoder, target_encoder=self.target_encoder)
        if self.ingraph is not None:  # env state, update phase and (save_replay) the buffer
            out.update(self.ingraph.trackables())
        return out

    # -- helpers used inside the compiled steps ------------------------------------------------
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

        y = self.td_target(mb, next_features, self.sub_seed(seed, 0))
        critic_feat = self.features_for("critic", feat)
        q = self.critic(tf.concat([critic_feat, mb["actions"]], -1))
        one_step_next = "step_next_obs" not in mb  # next_obs is the single step's

        def encode(obs):  # what the auxiliary terms read: features as "aux" may see them
            f = next_features() if one_step_next and obs is mb["next_obs"] else self.features(obs)
            return self.features_for("aux", f)

        out = Outputs(self, {
            "q": lambda: q, "target": lambda: y, "features": lambda: critic_feat,
            "aux_context": lambda: AuxContext(mb, self.features_for("aux", feat), encode,
                                              self.sub_seed(seed, 1))})
        return self.evaluate_group("critic", mb, out)

    def loss_terms(self, mb, seed=None) -> dict[str, tf.Tensor]:
        """Every named loss on one batch with the current parameters (no update): the audit's."""
        if seed is None:  # a fixed seed outside the training stream: auditing changes nothing
            seed = probe_seed(self.config.seed)
        critic, _ = self.critic_terms(mb, seed)
        actor, _ = self.actor_terms(mb, self.sub_seed(seed, 8))
        return {**critic, **actor}

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
        mods.update(getattr(self, "term_modules", {}))
        mods.update(self.policy_modules())
        if hasattr(self, "target_critic"):
            mods["targets"] = self.target_variables()
        return mods

    def flow_losses(self, batch) -> dict:
        mb = Transitions.of(batch).map(lambda v: tf.convert_to_tensor(np.asarray(v)[0]))
        return {name: (lambda name=name: self.loss_terms(mb)[name]) for name in self._objective.names}

    # -- checkpoints with the replay buffer -------------------------------------------------------
    def save(self) -> str:
        # The in-graph buffer is in the TF checkpoint itself; the NumPy one goes first, so a
        # kill between the two leaves a stray buffer (pruned later), never a checkpoint without it.
        numpy_buffer = self.ingraph is None and self.checkpointer is not None
        if numpy_buffer and self.config.save_replay:
            self.replay.save(replay_dir(self.checkpointer.directory, int(self.global_step.numpy())))
        path = super().save()
        if numpy_buffer:
            prune_replays(self.checkpointer.directory, self.checkpointer.manager.checkpoints)
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
