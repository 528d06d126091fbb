"""CrossQ (Bhatt et al. 2024, "CrossQ: Batch Normalization in Deep Reinforcement Learning for
Greater Sample Efficiency and Simplicity"), on SAC's page: SAC without target networks.

Its critics normalise inputs and hidden layers with Batch Renormalization, and see (s, a) and
(s', a' ~ pi) as ONE batch (both halves normalised with the same statistics). Losses:
  critic: SAC's, against y = r + gamma (1 - terminated) (min Q(s', a') - alpha log pi(a'|s'))
          from the next half of that joint pass, severed;
  actor and alpha: SAC's (critics in evaluation mode), every `policy_delay` critic updates.
Defaults are sb3-contrib's (below; the actor keeps [256, 256]); unlike sb3-contrib, the actor is
SAC's plain MLP (sb3-contrib also renormalises the actor's layers). See docs/offpolicy.md.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from agents.sac import SAC, SACConfig
from rl_sever.auxiliary import AuxContext
from rl_sever.config.fields import check
from rl_sever.isolation import sever
from rl_sever.nn.distributions import squashed_gaussian_sample
from rl_sever.objective.outputs import Outputs

__all__ = ["CrossQ", "CrossQConfig"]


@dataclass
class CrossQConfig(SACConfig):
    learning_rate: float = 1e-3
    """Learning rate of the actor, the critics and alpha."""
    policy_delay: int = 3
    """Update the actor once every this many critic updates."""
    critic_hidden_sizes: list[int] = field(default_factory=lambda: [1024, 1024])
    """Hidden widths of each critic (the actor uses network.hidden_sizes)."""
    batch_norm_momentum: float = 0.01
    """Rate at which the running statistics follow the batch statistics."""
    batch_norm_eps: float = 0.001
    """Added to the variance before its square root."""
    renorm_warmup_steps: int = 100_000
    """Critic updates normalised by the batch statistics alone (plain batch norm) before
    Batch Renormalization corrects them towards the running statistics."""
    adam_beta1: float = 0.5
    """Adam's beta1 for the actor and critic optimizers (alpha's keeps 0.9)."""

    def validate(self) -> None:
        super().validate()
        check(self.policy_delay >= 1, f"policy_delay must be >= 1, got {self.policy_delay}")
        check(all(h > 0 for h in self.critic_hidden_sizes), "critic_hidden_sizes must be positive")
        check(0 < self.batch_norm_momentum <= 1, "batch_norm_momentum must be in (0, 1]")
        check(self.batch_norm_eps > 0, "batch_norm_eps must be positive")
        check(0 <= self.adam_beta1 < 1, "adam_beta1 must be in [0, 1)")


class RenormCritics(tf.Module):
    """`members` Q-networks: [BRN, Dense, ReLU] per hidden layer, then [BRN, Dense(1)]. Input
    [batch, in] or [members, batch, in]; output [members, batch, 1]. `weights`: the trainable
    variables (kernels, biases, renormalisation scales and shifts); the running statistics are
    checkpointed, never trained."""

    RMAX, DMAX = 3.0, 5.0  # Batch Renormalization's clipping of r and d

    def __init__(self, in_dim: int, sizes: list[int], members: int, cfg: CrossQConfig, seed: int,
                 hidden_dtype: str = "float32"):
        super().__init__(name="critic")
        self.hidden_dtype = hidden_dtype  # bfloat16: hidden-to-hidden matmuls, as DenseStack
        rng, dims = np.random.default_rng(seed), [in_dim, *sizes, 1]
        self.momentum, self.eps = cfg.batch_norm_momentum, cfg.batch_norm_eps
        self.warmup, self.members = cfg.renorm_warmup_steps, members
        def v(value, name, trainable=True):
            return tf.Variable(np.asarray(value, np.float32), trainable=trainable, name=name)

        self.layers = []  # per member, per layer: (scale, shift, mean, var, kernel, bias)
        for _ in range(members):
            member = []
            for fan_in, fan_out in zip(dims, dims[1:]):
                bound = 1.0 / math.sqrt(fan_in)  # PyTorch's nn.Linear default, as DenseStack
                member.append((v(np.ones(fan_in), "scale"), v(np.zeros(fan_in), "shift"),
                               v(np.zeros(fan_in), "mean", False), v(np.ones(fan_in), "var", False),
                               v(rng.uniform(-bound, bound, (fan_in, fan_out)), "kernel"),
                               v(rng.uniform(-bound, bound, (fan_out,)), "bias")))
            self.layers.append(member)
        self.steps = tf.Variable(0, dtype=tf.int64, trainable=False, name="steps")

    @property
    def weights(self) -> list[tf.Variable]:
        return [w for member in self.layers for scale, shift, _, _, kernel, bias in member
                for w in (scale, shift, kernel, bias)]

    def __call__(self, x, training: bool = False, severed: bool = False, update: bool = True):
        """`training`: normalise by the batch (renormalised after the warm-up) and, with
        `update`, move the running statistics; else by the running statistics. `severed`: the
        weights are read through sever (a loss through this call reaches no critic weight)."""
        inputs = tf.unstack(x, self.members) if x.shape.rank == 3 else [x] * self.members
        out = tf.stack([self._member(h, layers, training, severed, update)
                        for h, layers in zip(inputs, self.layers)])
        if training and update:  # after the forward pass: the warm-up counts finished steps
            with tf.control_dependencies([out]):
                self.steps.assign_add(1)
        return out

    def _member(self, h, layers, training, severed, update):
        read = sever if severed else (lambda w: w)
        for i, (scale, shift, mean, var, kernel, bias) in enumerate(layers):
            h = (self._renorm(h, mean, var, update) if training
                 else (h - mean) / tf.sqrt(var + self.eps))
            h = h * read(scale) + read(shift)
            if 0 < i < len(layers) - 1 and self.hidden_dtype == "bfloat16":  # where the FLOPs are
                h = tf.cast(tf.matmul(tf.cast(h, tf.bfloat16), tf.cast(read(kernel), tf.bfloat16)),
                            tf.float32)
            else:
                h = tf.matmul(h, read(kernel))
            h = h + read(bias)
            if i < len(layers) - 1:
                h = tf.nn.relu(h)
        return h

    def _renorm(self, h, mean, var, update):
        batch_mean = tf.reduce_mean(h, 0)
        n = tf.cast(tf.shape(h)[0], tf.float32)
        batch_var = tf.reduce_sum(tf.square(h - batch_mean), 0) / (n - 1.0)  # unbiased
        batch_std = tf.sqrt(batch_var + self.eps)
        # Batch Renormalization (Ioffe 2017): after the warm-up, correct the batch statistics
        # towards the running ones; r and d are constants (sever) as the paper prescribes.
        std = tf.sqrt(var + self.eps)
        r = sever(tf.clip_by_value(batch_std / std, 1.0 / self.RMAX, self.RMAX))
        d = sever(tf.clip_by_value((batch_mean - mean) / std, -self.DMAX, self.DMAX))
        # sqrt(batch_var) is taken only where it is used and positive. Elsewhere (the warm-up,
        # or a unit without variance in this batch, such as a ReLU unit dead for every row)
        # the correction is zero, as its value was, and so is its gradient: sqrt's gradient at
        # zero is infinite and made the whole update NaN at the end of the warm-up. Selects,
        # not a tf.cond per layer: the forward pass stays one graph.
        renorm = self.steps > self.warmup
        live = tf.logical_and(renorm, batch_var > 0.0)
        root = tf.where(live, tf.sqrt(tf.where(live, batch_var, tf.ones_like(batch_var))), 0.0)
        use_mean = tf.where(renorm, batch_mean - d * root / r, batch_mean)
        use_var = tf.where(renorm, batch_var / tf.square(r), batch_var)
        if update:
            mean.assign_add(self.momentum * (sever(batch_mean) - mean))
            var.assign_add(self.momentum * (sever(batch_var) - var))
        return (h - use_mean) / tf.sqrt(use_var + self.eps)


class CrossQ(SAC):
    """SAC without targets: batch-renormalised critics and one joint forward pass. The actor
    side is SAC's: its `self.critic(..., severed=True)` runs the critics in evaluation mode."""

    algo = "crossq"
    config_cls = CrossQConfig

    @property
    def policy_delay(self) -> int:
        return self.config.policy_delay

    def _build_critic(self, feature_dim: int) -> None:
        cfg = self.config  # no target critic: the TD target comes from the joint pass
        self.critic = RenormCritics(feature_dim + self.action_dim, cfg.critic_hidden_sizes,
                                    cfg.n_critics, cfg, seed=cfg.seed + 1,
                                    hidden_dtype=self.matmul_precision)
        self.target_critic = None

    def auto_intra_op_threads(self) -> int:
        # Wide critics (the MuJoCo preset's 2048 units) are one large matmul each: they want
        # every core, where SAC's 256-unit networks run fastest on one intra-op thread.
        return 0 if max(self.config.critic_hidden_sizes) > 512 else super().auto_intra_op_threads()

    def make_optimizer(self, modules, name):
        opt = super().make_optimizer(modules, name)
        if name != "alpha_optimizer":  # sb3-contrib: Adam(betas=(0.5, 0.999)) for the policy
            for keras_opt in opt.optimizers.values():
                keras_opt.beta_1 = self.config.adam_beta1
        return opt

    def target_pairs(self) -> list:
        return []  # no target networks

    def trackables(self) -> dict:
        return {k: v for k, v in super().trackables().items() if k != "target_critic"}

    def flow_modules(self) -> dict[str, list]:
        return {k: v for k, v in super().flow_modules().items() if k != "targets"}

    # -- losses -----------------------------------------------------------------------------
    def critic_terms(self, mb, seed):
        feat, next_feat = self.features(mb["obs"]), self.features(mb["next_obs"])
        critic_feat = self.features_for("critic", feat)
        next_actions, next_logp = squashed_gaussian_sample(*self._policy(sever(next_feat)),
                                                           self.sub_seed(seed, 0))
        # The joint forward pass: (s, a) and (s', a') as one batch, normalised together. The
        # next half is severed on the way in (no gradient into the actor or the encoder
        # through a' or through the batch statistics) and is the TD target below.
        current = tf.concat([critic_feat, mb["actions"]], -1)
        following = sever(tf.concat([next_feat, next_actions], -1))
        # The audit and the construction probe evaluate losses without moving the statistics.
        joint = self.critic(tf.concat([current, following], 0), training=True,
                            update=not getattr(self, "_probing", False))
        q, q_next = tf.split(joint, 2, axis=1)
        soft = tf.reduce_min(q_next, axis=0)[:, 0] - tf.exp(self.log_alpha) * next_logp
        # TD target: a constant for the critic loss (sever): bootstrap unless terminated.
        y = sever(mb["rewards"] + mb["discounts"] * (1.0 - mb["terminated"]) * soft)

        def encode(obs):  # what auxiliary terms read: features as "aux" may see them
            return self.features_for("aux", next_feat if obs is mb["next_obs"] else self.features(obs))

        out = Outputs(self, {
            "q": lambda: q, "target": lambda: y, "features": lambda: critic_feat,
            "aux_context": lambda: AuxContext(mb, self.features_for("aux", feat), encode,
                                              self.sub_seed(seed, 1))})
        return self.evaluate_group("critic", mb, out)

    def loss_terms(self, mb, seed=None):
        with self.probing():
            return super().loss_terms(mb, seed)

    def _probe_terms(self):
        with self.probing():
            return super()._probe_terms()

    @contextlib.contextmanager
    def probing(self):
        """Losses evaluated outside an update (the audit, the construction probe) leave the
        running statistics where they are."""
        self._probing = True
        try:
            yield
        finally:
            self._probing = False
