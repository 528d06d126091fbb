"""Shared on-policy actor-critic: networks, compiled act and update, flow contract.

PPO and A2C differ only in their policy loss and in how many epochs/minibatches an update
makes; everything else (GAE on the rollout, value and entropy losses, the optimizer, metrics)
lives here, inside one compiled call per update.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from rl_sever import losses
from rl_sever.advantages import gae
from rl_sever.agent import Agent
from rl_sever.audit import Flow, FlowContract
from rl_sever.ingraph import InGraphTrainer, TrainedBatch, tfnative_env
from rl_sever.networks import ActorCritic
from rl_sever.optim import ModuleOptimizer
from rl_sever.schedules import Scheduled
from rl_sever.settings import OnPolicyConfig


class OnPolicyAgent(Agent):
    """Base for PPO and A2C. Subclasses set `config_cls` and implement `policy_loss`."""

    config_cls = OnPolicyConfig
    mode = "on_policy"

    # -- subclass hooks ---------------------------------------------------------------------
    def policy_loss(self, logp, mb) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        raise NotImplementedError

    def n_epochs(self) -> int:
        return 1

    def minibatch_size(self) -> int:
        return self.rollout_size

    # -- construction -----------------------------------------------------------------------
    def _build(self) -> None:
        cfg = self.config
        self.rollout_size = cfg.n_steps * cfg.n_envs
        self.model = ActorCritic(self.obs_shape, self.action, cfg.network)
        self.optimizer = ModuleOptimizer(
            self.model.modules(),
            learning_rate=cfg.learning_rate,
            kind=cfg.optimizer,
            epsilon=cfg.adam_eps,
            max_grad_norm=cfg.max_grad_norm if cfg.max_grad_norm > 0 else None,
        )
        self.schedules = {"learning_rate": Scheduled(self.optimizer.learning_rate, cfg.lr_schedule,
                                                      cfg.learning_rate)}
        self.loss_weights = {
            "policy": tf.Variable(1.0, trainable=False, name="w_policy"),
            "value": tf.Variable(cfg.vf_coef, trainable=False, name="w_value"),
            "entropy": tf.Variable(cfg.ent_coef, trainable=False, name="w_entropy"),
        }
        obs_spec = tf.TensorSpec([None, *self.obs_shape], self.obs_dtype)
        act_spec = tf.TensorSpec([None, None, *self.action.shape], self.action.dtype)
        rollout_obs = tf.TensorSpec([None, None, *self.obs_shape], self.obs_dtype)
        tn = tf.TensorSpec([None, None], tf.float32)
        tb = tf.TensorSpec([None, None], tf.bool)
        self.act_fn = tf.function(self._act, input_signature=[obs_spec])
        self.greedy_fn = tf.function(self._greedy, input_signature=[obs_spec])
        self.train_fn = tf.function(self._train, input_signature=[rollout_obs, act_spec, tn, tb, tb, rollout_obs])
        self.prepare_fn = tf.function(self._prepare, input_signature=[rollout_obs, act_spec, tn, tb, tb, rollout_obs])
        # TF-native env: rollout and update run as one compiled call (rl_sever.ingraph).
        tf_env = tfnative_env(self.env)
        self.ingraph = InGraphTrainer(self, tf_env) if tf_env is not None else None

    def make_collector(self):
        if self.ingraph is not None:
            from rl_sever.ingraph import InGraphCollector

            return InGraphCollector(self)
        from rl_sever.training_loop import OnPolicyCollector

        return OnPolicyCollector(self)

    def trackables(self) -> dict:
        out = {"model": self.model, "optimizer": self.optimizer, "loss_weights": self.loss_weights}
        if self.ingraph is not None:  # the TF-native envs' state, so a resume continues them
            out["ingraph_env"] = self.ingraph.state
        return out

    # -- acting -----------------------------------------------------------------------------
    def _act(self, obs):
        dist = self.model.distribution(obs)
        return self.model.head.sample(dist, self.sample_seed())

    def _greedy(self, obs):
        return self.model.head.mode(self.model.distribution(obs))

    # -- the update -------------------------------------------------------------------------
    def _prepare(self, obs, actions, rewards, terminated, dones, next_obs):
        """Everything the epochs need, from the rollout, with the pre-update parameters."""
        cfg = self.config
        shape = tf.shape(rewards)
        T, N = shape[0], shape[1]
        flat = lambda x: tf.reshape(x, tf.concat([[T * N], tf.shape(x)[2:]], 0))  # noqa: E731
        dist, values = self.model(flat(obs))
        logp_old = dist.log_prob(flat(actions))
        next_values = self.model.value(flat(next_obs))
        adv, ret = gae(rewards, tf.reshape(values, [T, N]), tf.reshape(next_values, [T, N]),
                       terminated, dones, cfg.gamma, cfg.gae_lambda)
        return {"obs": flat(obs), "actions": flat(actions), "logp_old": logp_old,
                "advantages": tf.reshape(adv, [-1]), "returns": tf.reshape(ret, [-1]),
                "old_values": values}

    def loss_terms(self, mb) -> tuple[dict[str, tf.Tensor], dict[str, tf.Tensor]]:
        """Named loss terms of one minibatch, and extra metrics. The update minimises their
        weighted sum; the flow audit differentiates each on its own."""
        dist, values = self.model(mb["obs"])
        logp = dist.log_prob(mb["actions"])
        pg_loss, extras = self.policy_loss(logp, mb)
        terms = {
            "policy": pg_loss,
            "value": self.value_loss(values, mb),
            "entropy": losses.entropy_loss(dist.entropy()),
        }
        return terms, extras

    def value_loss(self, values, mb):
        return losses.value_loss(values, mb["returns"])

    def total_loss(self, terms):
        return tf.add_n([self.loss_weights[k] * v for k, v in terms.items()])

    def _minibatch(self, data, idx):
        mb = {k: tf.gather(v, idx) for k, v in data.items()}
        if self.config.normalize_advantage and self.minibatch_size() > 1:
            mb["advantages"] = losses.normalize(mb["advantages"])
        return mb

    def _train(self, obs, actions, rewards, terminated, dones, next_obs):
        data = self._prepare(obs, actions, rewards, terminated, dones, next_obs)
        size = tf.shape(data["returns"])[0]
        mb_size = self.minibatch_size()
        n_mb = size // mb_size
        names = ["policy", "value", "entropy", "loss", "grad_norm"] + self.extra_metric_names()
        sums = {k: tf.constant(0.0) for k in names}
        count = tf.constant(0.0)
        variables = self.optimizer.all_variables
        for _ in tf.range(self.n_epochs()):
            if self.n_epochs() > 1 or mb_size < self.rollout_size:
                perm = self._permutation(size)
            else:
                perm = tf.range(size)
            for i in tf.range(n_mb):
                mb = self._minibatch(data, perm[i * mb_size : (i + 1) * mb_size])
                with tf.GradientTape() as tape:
                    terms, extras = self.loss_terms(mb)
                    loss = tf.debugging.check_numerics(self.total_loss(terms), "on-policy loss")
                grad_norm = self.optimizer.apply(tape.gradient(loss, variables))
                step = dict(terms, loss=loss, grad_norm=grad_norm, **extras)
                sums = {k: sums[k] + tf.cast(step[k], tf.float32) for k in names}
                count += 1.0
            if self.stop_early(sums, count):
                break
        out = {k: v / tf.maximum(count, 1.0) for k, v in sums.items()}
        out["n_updates"] = count
        out["explained_variance"] = losses.explained_variance(data["old_values"], data["returns"])
        return out

    def _permutation(self, size):
        if self.config.jit_compile:  # XLA has no StatelessShuffle; sorting random keys is uniform too
            return tf.argsort(tf.random.stateless_uniform([size], self.sample_seed()))
        return tf.random.experimental.stateless_shuffle(tf.range(size), seed=self.sample_seed())

    def extra_metric_names(self) -> list[str]:
        return []

    def stop_early(self, sums, count) -> tf.Tensor:
        return tf.constant(False)

    def train(self, batch: dict[str, np.ndarray] | TrainedBatch) -> dict[str, float]:
        """Run one compiled update on a rollout; returns metrics with SB3-compatible names.
        A TrainedBatch (in-graph iteration) was already trained on: only its metrics are mapped."""
        if isinstance(batch, TrainedBatch):
            out = batch.metrics
        else:
            out = self.train_fn(batch["obs"], batch["actions"], batch["rewards"],
                                batch["terminated"], batch["dones"], batch["next_obs"])
        out = {k: float(v) for k, v in out.items()}
        metrics = {
            "train/policy_gradient_loss": out["policy"],
            "train/value_loss": out["value"],
            "train/entropy_loss": out["entropy"],
            "train/loss": out["loss"],
            "train/grad_norm": out["grad_norm"],
            "train/explained_variance": out["explained_variance"],
            "train/n_updates": out["n_updates"],
        }
        for k in self.extra_metric_names():
            metrics[f"train/{k}"] = out[k]
        if self.model.log_std is not None:
            metrics["train/std"] = float(np.mean(np.exp(self.model.log_std.numpy())))
        return metrics

    # -- gradient-flow audit ----------------------------------------------------------------
    def flow_modules(self) -> dict[str, list]:
        return self.model.modules()

    def flow_losses(self, batch: dict[str, np.ndarray]) -> dict:
        data = self.prepare_fn(batch["obs"], batch["actions"], batch["rewards"], batch["terminated"],
                               batch["dones"], batch["next_obs"])
        mb = self._minibatch(data, tf.range(min(self.minibatch_size(), int(data["returns"].shape[0]))))

        def term(name):
            return lambda: self.loss_terms(mb)[0][name]

        return {name: term(name) for name in ("policy", "value", "entropy")}

    def flow_contract(self) -> FlowContract:
        shared = self.model.encoder is not None
        actor = {"actor"} | ({"encoder"} if shared and self.model.actor_trains_encoder else set())
        critic = {"critic"} | ({"encoder"} if shared and self.model.critic_trains_encoder else set())
        return FlowContract({
            "policy": Flow(must=actor, may=actor),
            "value": Flow(must=critic, may=critic),
            "entropy": Flow(must={"actor"}, may=actor),
        })
