"""IMPALA (Espeholt et al. 2018): an actor-critic whose runners act asynchronously with
slightly old weights, corrected by V-trace, on the shared on-policy actor-critic.

The update is A2C's (one gradient step on the batch: policy gradient, value regression,
entropy) with V-trace in place of GAE: the learner recomputes the values and the
log-probabilities of the batch's actions under its current weights, and the importance ratios
against the behaviour policy that acted (the log-probabilities the runners stored) weight the
targets (`rho_bar`, `c_bar`) and the policy gradient (`pg_rho_bar`). With `runners: N` the
runners never wait for the learner (rl_sever.runners.collectors.AsyncRolloutRunners): each
update takes the next N rollouts to arrive, and their policy lag (updates between the weights
a runner acted with and the learner's) is logged as runners/policy_lag_mean and _max. Without
runners the batch is on-policy and V-trace reduces to n-step returns (A2C's targets).
"""

from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf

from agents.a2c import A2C, A2CConfig
from rl_sever.config.fields import check
from rl_sever.isolation import sever
from rl_sever.objective.advantages import vtrace
from rl_sever.onpolicy import sequences
from rl_sever.onpolicy.collector import OnPolicyCollector
from rl_sever.onpolicy.ingraph import InGraphCollector
from rl_sever.runners.collectors import AsyncRolloutRunners

__all__ = ["IMPALA", "IMPALAConfig"]


@dataclass
class IMPALAConfig(A2CConfig):
    n_steps: int = 20
    """Steps per env per rollout (the paper's unroll length)."""
    learning_rate: float = 6e-4
    """Initial learning rate (RMSprop, as in the paper)."""
    adam_eps: float = 0.01
    """RMSprop's epsilon (the paper's 0.01)."""
    ent_coef: float = 0.01
    """Entropy bonus weight."""
    max_grad_norm: float = 40.0
    """Global gradient-norm clip (the paper's 40)."""
    gae_lambda: float = 1.0
    """V-trace's lambda (1.0: the paper's targets)."""
    rho_bar: float = 1.0
    """Clip of the importance ratio in the value targets."""
    c_bar: float = 1.0
    """Clip of the importance ratio in the traces (how far a correction reaches back)."""
    pg_rho_bar: float = 1.0
    """Clip of the importance ratio weighting the policy gradient."""
    log_every_steps: int = 10_000
    """Write TensorBoard scalars at most every this many env steps."""

    def validate(self) -> None:
        super().validate()
        for name in ("rho_bar", "c_bar", "pg_rho_bar"):
            check(getattr(self, name) > 0, f"{name} must be positive, got {getattr(self, name)}")


class IMPALA(A2C):
    """IMPALA: A2C's terms on V-trace targets, with asynchronous runners."""

    algo = "impala"
    config_cls = IMPALAConfig
    collector_classes = (OnPolicyCollector, InGraphCollector, AsyncRolloutRunners)

    def targets(self, rollout: dict, flat):
        cfg = self.config
        shape = tf.shape(rollout["rewards"])
        masks = None if isinstance(rollout["action_mask"], tuple) else rollout["action_mask"]
        if self.recurrent:  # each env's whole rollout as one sequence, from its first state
            em = sequences.env_major
            dist, values = self.model.sequence(
                flat(em(rollout["obs"])), rollout["state"][0], rollout["starts"],
                None if masks is None else flat(em(masks)))
            actions = flat(em(rollout["actions"]))
            time_major = lambda x: tf.transpose(tf.reshape(x, [shape[1], shape[0]]))  # noqa: E731
        else:
            dist, values = self.model(flat(rollout["obs"]), None if masks is None else flat(masks))
            actions = flat(rollout["actions"])
            time_major = lambda x: tf.reshape(x, shape)  # noqa: E731
        # The learner's current policy and values: targets, never trained through.
        logp = sever(time_major(dist.log_prob(actions)))
        values = sever(time_major(values))
        adv, vs = vtrace(logp - rollout["logp_old"], rollout["rewards"], values,
                         sever(rollout["next_values"]), rollout["terminated"], rollout["dones"],
                         cfg.gamma, cfg.gae_lambda, cfg.rho_bar, cfg.c_bar, cfg.pg_rho_bar)
        return adv, vs, values
