"""TD3 (Fujimoto et al. 2018), on the shared off-policy actor-critic.

Losses: critic (each Q-function against a severed TD target from the target critics, with
target policy smoothing) and actor (-Q1(s, mu(s)), applied every `policy_delay` critic
updates together with the Polyak update of every target network), plus any auxiliary losses
on the shared encoder. DDPG (agents/ddpg.py) is this page with one critic, no target
smoothing and no delay.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import tensorflow as tf

from rl_sever.config.fields import check
from rl_sever.config.offpolicy import OffPolicyConfig, OffPolicyNetworkConfig
from rl_sever.isolation import sever
from rl_sever.objective.term import LossTerm, Objective
from rl_sever.offpolicy.agent import OffPolicyAgent
from rl_sever.offpolicy.exploration import tanh_with_noise

__all__ = ["TD3", "TD3Config"]


@dataclass
class TD3Config(OffPolicyConfig):
    learning_rate: float = 1e-3
    """Initial learning rate of the actor and critic optimizers."""
    policy_delay: int = 2
    """Update the actor and the targets once every this many critic updates."""
    target_policy_noise: float = 0.2
    """Std of the Gaussian noise added to the target action (0: no target smoothing)."""
    target_noise_clip: float = 0.5
    """Clip the target-action noise to +-this value (actions live in [-1, 1])."""
    action_noise: float = 0.1
    """Std of the Gaussian exploration noise added to actions when acting (in [-1, 1] units)."""
    n_critics: int = 2
    """Number of Q-functions; the TD target uses their minimum, the actor the first."""
    network: OffPolicyNetworkConfig = field(
        default_factory=lambda: OffPolicyNetworkConfig(hidden_sizes=[400, 300]))
    """Network architecture."""

    def validate(self) -> None:
        super().validate()
        check(self.policy_delay >= 1, f"policy_delay must be >= 1, got {self.policy_delay}")
        check(self.target_policy_noise >= 0, "target_policy_noise must be >= 0")
        check(self.target_noise_clip >= 0, "target_noise_clip must be >= 0")
        check(self.action_noise >= 0, "action_noise must be >= 0")
        check(self.n_critics >= 1, f"n_critics must be >= 1, got {self.n_critics}")


class TD3(OffPolicyAgent):
    """TD3: deterministic tanh actor, twin critics, target smoothing, delayed actor updates."""

    algo = "td3"
    config_cls = TD3Config

    def _build_policy(self, feature_dim: int) -> None:
        self.actor = self.mlp(feature_dim, self.action_dim, seed=self.config.seed, name="actor")
        self.target_actor = self.actor.copy("target_actor")

    def trackables(self) -> dict:
        return dict(super().trackables(), target_actor=self.target_actor)

    @property
    def policy_delay(self) -> int:
        return self.config.policy_delay

    def target_pairs(self) -> list[tuple[list, list]]:
        return [(self.actor.weights, self.target_actor.weights), *super().target_pairs()]

    # -- the objective: actor, critic -----------------------------------------------------------
    def default_objective(self) -> Objective:
        return Objective([LossTerm("actor", lambda b, o: -tf.reduce_mean(o["q1"]),
                                   trains=lambda a: a.group_modules("actor", {"actor"}),
                                   description="-Q1(s, pi(s))"),
                          self.critic_term()])

    # -- acting -----------------------------------------------------------------------------
    def _act_unit(self, obs, seed):
        actions = self._greedy_unit(obs)
        if self.config.action_noise > 0:
            noise = self.config.action_noise * tf.random.stateless_normal(tf.shape(actions), seed)
            actions = tf.clip_by_value(actions + noise, -1.0, 1.0)
        return actions

    def _greedy_unit(self, obs):
        return tf.tanh(self.actor(self.features(obs)))

    def host_exploration(self):
        return tanh_with_noise, {"noise": self.config.action_noise}

    # -- losses -----------------------------------------------------------------------------
    def td_target(self, mb, next_features, seed):
        cfg = self.config
        next_feat = self.target_features(mb["next_obs"])
        next_actions = tf.tanh(self.target_actor(next_feat))
        if cfg.target_policy_noise > 0:  # target policy smoothing
            noise = cfg.target_policy_noise * tf.random.stateless_normal(tf.shape(next_actions),
                                                                         seed)
            noise = tf.clip_by_value(noise, -cfg.target_noise_clip, cfg.target_noise_clip)
            next_actions = tf.clip_by_value(next_actions + noise, -1.0, 1.0)
        q_next = self.target_critic(tf.concat([next_feat, next_actions], -1))
        value = tf.reduce_min(q_next, axis=0)[:, 0]
        # TD target: a constant for the critic loss, so no gradient reaches the targets.
        # Bootstrap unless terminated (truncation bootstraps from the true final obs).
        return sever(mb["rewards"] + mb["discounts"] * (1.0 - mb["terminated"]) * value)

    def actor_outputs(self, mb, seed):
        """Actor-side outputs: features (as the actor sees them), actions (unit, deterministic),
        q1 (first critic's Q(s, actions) as the critic returns it; critic weights and state
        features severed, dQ/da live) and q (the same, shape [batch])."""
        feat = self.features(mb["obs"])
        actor_feat = self.features_for("actor", feat)
        actions = tf.tanh(self.actor(actor_feat))
        # Q1 of the policy's action. dQ/da flows back into the actor; the critic's weights are
        # read through sever and the state features enter severed, so the actor loss has no
        # path into the critic (the actor optimizer does not list it either).
        q1 = self.critic(tf.concat([sever(feat), actions], -1), severed=True, member=0)
        thunks = {"features": lambda: actor_feat, "actions": lambda: actions,
                  "q1": lambda: q1, "q": lambda: tf.reshape(q1, [-1])}
        return thunks, {}
