"""Shared on-policy actor-critic: networks, compiled act and update, flow contract. PPO and
A2C differ only in their policy term and in how many epochs and minibatches an update makes;
GAE, the objective's terms (rl_sever.core.terms, bound in rl_sever.onpolicy.objective), the
optimizer and metrics live here, inside one compiled call per update.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from rl_sever.auxiliary import AuxContext, AuxiliarySet
from rl_sever.config.run import OnPolicyConfig, parse_grad_from
from rl_sever.core import metrics
from rl_sever.core.agent import Agent
from rl_sever.core.compiled import per_agent
from rl_sever.core.ingraph_env import tfnative_env
from rl_sever.core.rollout import Rollout
from rl_sever.core.threads import small_mlp_on_cpu
from rl_sever.errors import ConfigError
from rl_sever.isolation import sever
from rl_sever.nn.actor_critic import ActorCritic
from rl_sever.nn.layers import tf_variables
from rl_sever.objective import (
    LossTerm,
    Objective,
    Outputs,
    binding,
    entropy_bonus,
    losses,
    value_mse,
)
from rl_sever.objective.advantages import gae
from rl_sever.onpolicy import sequences
from rl_sever.onpolicy.collector import OnPolicyCollector
from rl_sever.onpolicy.greedy import GreedyOnHost
from rl_sever.onpolicy.ingraph import InGraphCollector, InGraphTrainer
from rl_sever.onpolicy.objective import OnPolicyObjective
from rl_sever.onpolicy.xla import XlaChoice
from rl_sever.runners.collectors import RolloutRunners
from rl_sever.runners.learners import train_learners


class OnPolicyAgent(GreedyOnHost, OnPolicyObjective, XlaChoice, Agent):
    """Base for PPO and A2C. Subclasses set `config_cls` and implement `policy_term`.

    `losses`: loss edits applied after config.losses, in order: spec strings
    (rl_sever.config.loss_spec), LossTerms (added) or Objectives (their terms added).
    """

    config_cls = OnPolicyConfig
    mode = "on_policy"
    collector_classes = (OnPolicyCollector, InGraphCollector, RolloutRunners)
    train_learners = staticmethod(train_learners)

    # -- subclass hooks ---------------------------------------------------------------------
    def policy_term(self) -> LossTerm:
        raise NotImplementedError

    def value_term(self) -> LossTerm:
        return value_mse()

    def default_objective(self) -> Objective:
        """policy + vf_coef * value + ent_coef * entropy."""
        cfg = self.config
        return self.policy_term() + cfg.vf_coef * self.value_term() + cfg.ent_coef * entropy_bonus()

    def n_epochs(self) -> int:
        return 1

    def auto_intra_op_threads(self) -> int:
        # One thread for MLP updates on CPU (rl_sever.core.threads; docs/performance.md).
        cfg = self.config
        # (XLA's updates, under `auto`, measured the same on one thread.)
        one = (small_mlp_on_cpu(self) and cfg.jit_compile is not True
               and cfg.distribute == "default")
        return 1 if one and tfnative_env(self.env) is None else 0

    def minibatch_size(self) -> int:
        return self.rollout_size

    # -- construction -----------------------------------------------------------------------
    def _build(self) -> None:
        cfg = self.config
        self.rollout_size = cfg.n_steps * cfg.n_envs
        self.model = ActorCritic(self.obs_shape, self.action, cfg.network,
                                 obs_dtype=self.obs_dtype, user_encoder=self.user_encoder)
        # A recurrent policy: rollouts store its states, updates unroll sequences of seq_len
        # steps (rl_sever.onpolicy.sequences).
        self.recurrent = self.model.core is not None
        self.layout = self.layout._replace(state_dim=self.model.state_dim)
        self.seq_len = ((cfg.bptt_length or math.gcd(cfg.n_steps, self.minibatch_size()))
                        if self.recurrent else 1)
        self._check_sequences()
        # Auxiliary losses (config `aux`) are terms reading the shared encoder (aux_context).
        feature_dim = self.model.encoder.out_dim if self.model.encoder is not None else 0
        self.aux = AuxiliarySet(cfg.aux, feature_dim, self.obs_shape,
                                self.obs_dtype, self.action, cfg.auxiliary)
        if len(self.aux) and self.model.encoder is None:
            raise ConfigError("auxiliary losses need network.shared_encoder: true")
        self._objective = self._assemble_objective()
        # The act steps take the observations, and their action masks where the env gives them.
        act_signature = [self.layout.obs_spec()]
        if self.recurrent:  # ... and the recurrent state they act from
            act_signature.append(tf.TensorSpec([None, self.layout.state_dim], tf.float32))
        if self.masked:
            act_signature.append(tf.TensorSpec([None, self.layout.mask_dim], tf.bool))
        self._rollout_signature = list(Rollout.spec(self.layout, (None, None)))
        # Straight-line code: traced without AutoGraph (rl_sever.core.compiled.plain_graph).
        self.act_fn, self.behave_fn, self.greedy_fn = (
            per_agent(tf.function(f, input_signature=act_signature, autograph=False))
            for f in (self._act, self._behave, self._greedy))
        self._built_terms: dict = {}
        self._bind_objective()
        # TF-native env: rollout and update run as one compiled call (rl_sever.onpolicy.ingraph).
        tf_env = tfnative_env(self.env)
        if tf_env is not None and self.replicas.distributed:
            raise ConfigError(f"distribute={self.config.distribute} is not supported with TF-native "
                              "(tf:) environments; use distribute=default or a Gymnasium env")
        self.replicas.check_divisible(self.minibatch_size(), "the minibatch size")
        self.ingraph = InGraphTrainer(self, tf_env) if tf_env is not None else None

    def _check_sequences(self) -> None:
        cfg = self.config
        if not self.recurrent:
            return
        if cfg.n_steps % self.seq_len or self.minibatch_size() % self.seq_len:
            raise ConfigError(f"bptt_length ({self.seq_len}) must divide n_steps ({cfg.n_steps}) "
                              f"and the minibatch size ({self.minibatch_size()})")
        # Each replica takes whole sequences of every minibatch.
        self.replicas.check_divisible(self.minibatch_size() // self.seq_len,
                                      "the sequences of a minibatch")

    def trackables(self) -> dict:
        out = {"model": self.model, "optimizer": self.optimizer, **self.terms_trackables()}
        if self.ingraph is not None:  # the TF-native envs' state, so a resume continues them
            out["ingraph_env"] = self.ingraph.state
            if self.recurrent:
                out["ingraph_memory"] = self.ingraph.memory
        return out

    # -- acting -----------------------------------------------------------------------------
    def _policy(self, obs, extra):
        """(distribution, value, (new state,) or ()) from the act steps' inputs: observations,
        then the recurrent state and the action masks where the agent has them."""
        extra = list(extra)
        state = extra.pop(0) if self.recurrent else None
        mask = extra.pop(0) if extra else None
        if state is None:
            return (*self.model(obs, mask), ())
        dist, value, state = self.model.step(obs, state, mask)
        return dist, value, (state,)

    def _act(self, obs, *extra):
        dist, _, state = self._policy(obs, extra)
        actions = self.model.head.sample(dist, self.next_seed())
        return (actions, *state) if state else actions

    def _behave(self, obs, *extra):
        """Sampled actions, their log-probabilities, values (and a recurrent next state)."""
        dist, value, state = self._policy(obs, extra)
        actions = self.model.head.sample(dist, self.next_seed())
        return (actions, dist.log_prob(actions), value, *state)

    def policy_distribution(self, obs, *extra):  # (kind, parameters, state): stochastic export
        dist, _, state = self._policy(obs, extra)
        return (*self.model.head.parameters(dist), state)

    def _greedy(self, obs, *extra):
        dist, _, state = self._policy(obs, extra)
        actions = self.model.head.mode(dist)
        return (actions, *state) if state else actions

    # -- the update -------------------------------------------------------------------------
    def _prepare(self, *rollout):
        """Everything the epochs need, from the rollout (the fields of a Rollout, in order),
        with the pre-update parameters: the behaviour log-probabilities and values the rollout
        stored, the values of the observations reached, the advantages (`targets`)."""
        obs, actions, rewards, terminated, dones, next_obs, logp_old, values, mask, state = \
            Rollout(*rollout)
        shape = tf.shape(rewards)
        T, N = shape[0], shape[1]
        flat = lambda x: tf.nest.map_structure(  # noqa: E731  (a Dict observation: each key)
            lambda v: tf.reshape(v, tf.concat([[T * N], tf.shape(v)[2:]], 0)), x)
        starts = None
        if self.recurrent:  # V(next obs) given the memory its episode had when it got there
            starts = sequences.episode_starts(sequences.env_major(dones))
            next_values = tf.transpose(self.model.next_values(
                sequences.env_major(obs), sequences.env_major(next_obs), state[0], starts))
        else:
            next_values = tf.reshape(self.model.value(flat(next_obs)), [T, N])
        adv, ret, values = self.targets(
            {"obs": obs, "actions": actions, "rewards": rewards, "terminated": terminated,
             "dones": dones, "logp_old": logp_old, "values": values, "next_values": next_values,
             "action_mask": mask, "state": state, "starts": starts}, flat)
        steps = {"obs": obs, "actions": actions, "logp_old": logp_old, "advantages": adv,
                 "returns": ret, "old_values": values}
        if self.masked:
            steps["action_mask"] = mask
        if self.aux.needs_transitions or self._objective.needs_transitions:
            steps.update(rewards=rewards, next_obs=next_obs)
        if not self.recurrent:
            return {k: flat(v) for k, v in steps.items()}
        # Whole sequences per env, of a length known when tracing (the construction probe's
        # synthetic rollout, shorter than seq_len, is one sequence per env).
        short = rewards.shape[0] is not None and rewards.shape[0] < self.seq_len
        return sequences.sequence_data({k: sequences.env_major(v) for k, v in steps.items()},
                                       sequences.env_major(state), starts,
                                       rewards.shape[0] if short else self.seq_len)

    def targets(self, rollout: dict, flat) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """Advantages, value targets and the values they were computed with ([T, N] each) of a
        rollout (its fields, the values of the observations reached `next_values`, a recurrent
        policy's episode `starts` [N, T]); `flat` reshapes [T, N, ...] to rows. GAE on the
        values the rollout stored, by default."""
        cfg = self.config
        # Under XLA the scan stays: the compiled loop costs nothing per call there, and the
        # compiled update keeps its bits.
        adv, ret = gae(rollout["rewards"], rollout["values"], rollout["next_values"],
                       rollout["terminated"], rollout["dones"], cfg.gamma, cfg.gae_lambda,
                       unroll=not self.traced_with_xla())
        return adv, ret, rollout["values"]

    def forward(self, mb) -> Outputs:
        """The forward outputs loss terms read (rl_sever.objective.outputs), computed lazily
        and once per minibatch."""
        model_out = []

        def model():
            if not model_out:
                model_out.append(self.model.sequence(mb["obs"], mb["state0"], mb["starts"],
                                                     mb.get("action_mask")) if self.recurrent
                                 else self.model(mb["obs"], mb.get("action_mask")))
            return model_out[0]

        thunks = {
            "dist": lambda: model()[0],
            "values": lambda: model()[1],
            "logp": lambda: out["dist"].log_prob(mb["actions"]),
            "entropy": lambda: out["dist"].entropy(),
        }
        if self.model.encoder is not None:
            thunks["features"] = lambda: self.model.encoder(mb["obs"])
        if len(self.aux):
            thunks["aux_context"] = lambda: self.aux_context(mb)
        out = Outputs(self, thunks)
        return out

    def loss_terms(self, mb, check: bool = True) -> tuple[dict[str, tf.Tensor], dict[str, tf.Tensor]]:
        """Named loss terms of one minibatch, and their metrics. The update minimises their
        weighted sum; the flow audit differentiates each on its own."""
        return self.evaluate_terms(self._objective, mb, self.forward(mb), check)

    def aux_context(self, mb) -> AuxContext:
        """What the auxiliary modules read: the shared encoder's features of the minibatch."""
        trains = "aux" in parse_grad_from(self.config.network.encoder_grad_from)

        def encode(obs):
            feat = self.model.encoder(obs)
            # Auxiliary losses move the encoder only when encoder_grad_from includes aux.
            return feat if trains else sever(feat)

        return AuxContext(mb, encode(mb["obs"]), encode, self.next_seed())

    def _minibatch(self, data, idx):
        """The rows `idx` of the prepared rollout (None: all of them, in order); a recurrent
        policy's rows are sequences, flattened here for the loss terms."""
        mb = dict(data) if idx is None else tf.nest.map_structure(lambda v: tf.gather(v, idx), data)
        if self.recurrent:
            mb = sequences.flatten(mb)
        if self.config.normalize_advantage and self.minibatch_size() > 1:
            mb["advantages"] = losses.normalize(mb["advantages"])
        return mb

    def _train(self, *rollout):
        """The update on one rollout: epochs of minibatch gradient steps, as explicit
        tf.while_loops. Traced without AutoGraph (train_fn): converting this function and its
        helpers was half of the first update call's time (A2C CartPole: 0.75 s of 1.4 s).
        Users' loss terms are still converted (rl_sever.objective.evaluate)."""
        data = self._prepare(*rollout)
        size = tf.shape(data["returns"])[0]  # rows: transitions, or a recurrent policy's sequences
        mb_size, n_epochs = self.minibatch_size(), self.n_epochs()
        mb_rows = mb_size // self.seq_len
        names = [*self._objective.names, "loss", "grad_norm",
                 *binding.metric_keys(self._objective, self._term_metrics)]
        ev = losses.explained_variance(data["old_values"], data["returns"])
        if isinstance(n_epochs, int) and n_epochs == 1 and mb_size == self.rollout_size:
            # One gradient step on the whole rollout (A2C): no loops, no gathers. Each loop
            # variable of a tf.while_loop adds control-flow ops to every call (A2C CartPole:
            # 1.1 ms per update call with them, 0.85 ms without).
            step = self._gradient_step(self._minibatch(data, None))
            out = {k: tf.stack([tf.cast(step[k], tf.float32), 1.0]) for k in names}
            return {**out, **metrics.tally({"n_updates": tf.constant(1.0), "explained_variance": ev})}
        n_mb = size // mb_rows
        shuffle = not (isinstance(n_epochs, int) and n_epochs == 1) or mb_size < self.rollout_size

        def minibatch_steps(shuffled, sums, count):
            def body(i, sums, count):
                mb = self._minibatch(shuffled, i * mb_rows + tf.range(mb_rows))
                step = self._gradient_step(mb)
                return i + 1, {k: sums[k] + tf.cast(step[k], tf.float32) for k in names}, count + 1.0

            _, sums, count = tf.while_loop(lambda i, *_: i < n_mb, body,
                                           (tf.constant(0), sums, count))
            return sums, count

        def epoch(e, sums, count, stop):
            perm = self._permutation(size) if shuffle else tf.range(size)
            # One gather per epoch; each minibatch is then a contiguous slice of the shuffled
            # rollout (the same minibatches as gathering each by its indices).
            shuffled = tf.nest.map_structure(lambda v: tf.gather(v, perm), data)
            sums, count = minibatch_steps(shuffled, sums, count)
            return e + 1, sums, count, self.stop_early(sums, count)

        sums = {k: tf.constant(0.0) for k in names}
        _, sums, count, _ = tf.while_loop(
            lambda e, sums, count, stop: tf.logical_and(e < n_epochs, tf.logical_not(stop)), epoch,
            (tf.constant(0), sums, tf.constant(0.0), tf.constant(False)))
        out = {k: tf.stack([v, count]) for k, v in sums.items()}  # rl_sever.core.metrics
        return {**out, **metrics.tally({"n_updates": count, "explained_variance": ev})}

    def _gradient_step(self, mb) -> dict[str, tf.Tensor]:
        # One group over every module (rl_sever.core.learner): one tape watching exactly the
        # optimizer's variables; under a multi-replica strategy each replica differentiates
        # its slice of the minibatch and the gradients are averaged, then applied once.
        values = self.learner.run(self.phase, mb)
        values["loss"], values["grad_norm"] = values.pop("model_loss"), values.pop("model_grad_norm")
        return values

    def _permutation(self, size):
        if self.traced_with_xla():  # XLA has no StatelessShuffle; sorting random keys is uniform too
            return tf.argsort(tf.random.stateless_uniform([size], self.next_seed()))
        return tf.random.experimental.stateless_shuffle(tf.range(size), seed=self.next_seed())

    def _host_policy(self):
        """The collector's host policy (rl_sever.onpolicy.host_policy), if it acts on the host."""
        return getattr(self._collector, "host", None)

    def acting_variables(self) -> list:
        return tf_variables([v for group in self.model.modules().values() for v in group])

    def invalidate_host_copies(self) -> None:
        invalidate = getattr(self._collector, "invalidate", None)  # (an on-policy collector's)
        if invalidate is not None:
            invalidate()

    def stop_early(self, sums, count) -> tf.Tensor:
        return tf.constant(False)

    def train(self, batch: Rollout, counters: tuple[int, int] | None = None) -> dict[str, float]:
        """Run one compiled update on a rollout (a Rollout, or a mapping of its fields);
        returns metrics with SB3-compatible names. `counters`: the global step and iteration
        the same call sets first (the training loop's, where `counts_in_update`)."""
        rollout = Rollout.of(batch)
        if not self._preflight_done:
            self._preflight(self._first_minibatch(rollout))
        counts = () if counters is None else tuple(np.array(c, np.int64) for c in counters)

        def run():
            # XLA's or the plain update (rl_sever.onpolicy.xla).
            call, host = self._train_call(counted=counters is not None)
            return call(*rollout, *counts), host

        out, host = self.compiled_call(run)
        if host is not None:
            out, weights = out
            host.load(weights)
        return self.logged_metrics(out)

    @property
    def counts_in_update(self) -> bool:
        """The loop may hand its counters to `train` (a subclass's or an instance's own `train`
        gets none)."""
        return type(self).train is OnPolicyAgent.train and "train" not in vars(self)

    train_metric_keys = ("loss", "grad_norm", "explained_variance", "n_updates")

    def state_metrics(self) -> dict[str, float]:
        if self.model.log_std is None:
            return {}
        return {"train/std": float(np.mean(np.exp(self.model.log_std.numpy())))}

    # -- gradient-flow audit ----------------------------------------------------------------
    def flow_modules(self) -> dict[str, list]:
        return dict(self._modules)

    def flow_losses(self, batch: dict[str, np.ndarray]) -> dict:
        mb = self._first_minibatch(batch)
        if not self._preflight_done:
            self._preflight(mb)
        return {name: (lambda name=name: self.loss_terms(mb)[0][name]) for name in self._objective.names}

