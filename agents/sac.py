"""Soft Actor-Critic (Haarnoja et al. 2018, with automatic entropy tuning), on the shared
off-policy actor-critic.

Losses: critic (twin soft Q-functions against a severed TD target from the target critics),
actor (alpha * log pi(a|s) - min Q(s, a) for a reparameterised tanh-squashed Gaussian action),
alpha (the entropy-coefficient loss, which trains log_alpha and nothing else), plus any
auxiliary losses on the shared encoder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import tensorflow as tf

from rl_sever.config.fields import check
from rl_sever.config.offpolicy import OffPolicyConfig
from rl_sever.core.optim import ModuleOptimizer
from rl_sever.isolation import sever
from rl_sever.nn.distributions import split_mean_log_std, squashed_gaussian_sample
from rl_sever.objective.term import LossTerm, Objective
from rl_sever.offpolicy.agent import OffPolicyAgent
from rl_sever.offpolicy.exploration import squashed_gaussian

__all__ = ["SAC", "SACConfig"]


@dataclass
class SACConfig(OffPolicyConfig):
    learn_ent_coef: bool = True
    """Tune the entropy coefficient alpha automatically towards target_entropy."""
    ent_coef: float = 1.0
    """Entropy coefficient alpha: its initial value when learned, else its fixed value."""
    target_entropy: float | None = None
    """Target policy entropy for the learned alpha (None: -dim(action space))."""
    n_critics: int = 2
    """Number of Q-functions; the TD target and the actor use their minimum."""

    def validate(self) -> None:
        super().validate()
        check(self.ent_coef > 0, f"ent_coef must be positive, got {self.ent_coef}")
        check(self.n_critics >= 1, f"n_critics must be >= 1, got {self.n_critics}")


class SAC(OffPolicyAgent):
    """SAC with twin critics, Polyak-averaged target critics and a learned entropy coefficient."""

    algo = "sac"
    config_cls = SACConfig
    train_metric_keys = ("ent_coef",)  # from actor_outputs' extras, logged as train/ent_coef

    def _build_policy(self, feature_dim: int) -> None:
        cfg, dim = self.config, self.action_dim
        self.actor = self.mlp(feature_dim, 2 * dim, seed=cfg.seed, name="actor")
        self.log_alpha = tf.Variable(math.log(cfg.ent_coef), name="log_alpha",
                                     trainable=cfg.learn_ent_coef)
        self.target_entropy = float(-dim if cfg.target_entropy is None else cfg.target_entropy)

    def extra_optimizers(self) -> dict[str, ModuleOptimizer]:
        if not self.config.learn_ent_coef:
            return {}
        return {"alpha": self.make_optimizer(self.policy_modules(), "alpha_optimizer")}

    def policy_modules(self) -> dict[str, list]:
        return {"alpha": [self.log_alpha]} if self.config.learn_ent_coef else {}

    def trackables(self) -> dict:
        return dict(super().trackables(), log_alpha=self.log_alpha)

    # -- the objective: actor, critic, alpha ----------------------------------------------------
    def default_objective(self) -> Objective:
        actor = LossTerm("actor", lambda b, o: tf.reduce_mean(o["alpha"] * o["logp"] - o["q"]),
                         trains=lambda a: a.group_modules("actor", {"actor"}),
                         description="alpha * log pi(a|s) - min Q(s, a), a ~ pi (reparameterised)")
        terms = [actor, self.critic_term()]
        if self.config.learn_ent_coef:
            # log pi is severed: the entropy-coefficient loss trains log_alpha and nothing else.
            terms.append(LossTerm(
                "alpha",
                lambda b, o: -tf.reduce_mean(
                    o["log_alpha"] * sever(o["logp"] + o.agent.target_entropy)),
                trains={"alpha"}, description="entropy-coefficient loss"))
        return Objective(terms)

    # -- acting -----------------------------------------------------------------------------
    def _policy(self, features: tf.Tensor):
        return split_mean_log_std(self.actor(features))

    def _act_unit(self, obs, seed):
        mean, log_std = self._policy(self.features(obs))
        return squashed_gaussian_sample(mean, log_std, seed)[0]

    def policy_distribution(self, obs):
        """("squashed_gaussian", pre-tanh mean and log-std, ()): actions are tanh(N(mean, std))
        in [-1, 1], then scaled to the action bounds."""
        mean, log_std = self._policy(self.features(obs))
        return "squashed_gaussian", {"mean": mean, "log_std": log_std}, ()

    def _greedy_unit(self, obs):
        return tf.tanh(self._policy(self.features(obs))[0])

    def host_exploration(self):
        return squashed_gaussian, {}

    # -- losses -----------------------------------------------------------------------------
    def td_target(self, mb, next_features, seed):
        # The next action comes from the current policy on the next state; none of it is trained
        # by the critic loss (the whole target is severed below).
        mean, log_std = self._policy(sever(next_features()))
        next_actions, next_logp = squashed_gaussian_sample(mean, log_std, seed)
        q_next = self.target_critic(
            tf.concat([self.target_features(mb["next_obs"]), next_actions], -1))
        soft_value = tf.reduce_min(q_next, axis=0)[:, 0] - tf.exp(self.log_alpha) * next_logp
        # TD target: a constant for the critic loss, so no gradient reaches the targets, the
        # actor or alpha. Bootstrap unless terminated (truncation bootstraps from the final obs).
        return sever(mb["rewards"] + mb["discounts"] * (1.0 - mb["terminated"]) * soft_value)

    def critic_loss(self, q, y):
        return 0.5 * super().critic_loss(q, y)  # SB3's scaling, so train/critic_loss compares

    def actor_q(self, q):
        """The Q the actor maximises, from the critics' outputs: the minimum over the critics."""
        return tf.reduce_min(q, axis=0)[:, 0]

    def actor_outputs(self, mb, seed):
        """Actor-side outputs: features (as the actor sees them), mean, log_std, actions (unit,
        reparameterised), logp, q (actor_q of the critics' Q(s, actions); critic weights and
        state features severed, dQ/da live), alpha (severed exp(log_alpha)), log_alpha (live)."""
        feat = self.features(mb["obs"])
        actor_feat = self.features_for("actor", feat)
        mean, log_std = self._policy(actor_feat)
        actions, logp = squashed_gaussian_sample(mean, log_std, seed)
        # Q of the policy's own action. The critic is not severed as a function: dQ/da flows
        # back into the actor. Its weights are read through sever, and the state features
        # enter severed, so the actor loss has no path into the critic (or into the encoder
        # through Q); the actor optimizer does not list the critic either.
        q = self.actor_q(self.critic(tf.concat([sever(feat), actions], -1), severed=True))
        alpha = sever(tf.exp(self.log_alpha))  # the actor loss must not move alpha
        thunks = {"features": lambda: actor_feat, "mean": lambda: mean,
                  "log_std": lambda: log_std, "actions": lambda: actions, "logp": lambda: logp,
                  "q": lambda: q, "alpha": lambda: alpha, "log_alpha": lambda: self.log_alpha}
        return thunks, {"ent_coef": tf.exp(self.log_alpha)}
