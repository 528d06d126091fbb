"""IMPALA (agents/impala.py): V-trace targets from the learner's current policy, severed; the
on-policy case is A2C's n-step targets; a recurrent policy replays each env's memory
(asynchronous runners and their policy lag: tests/test_runners.py)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from rl_sever.core.rollout import Rollout
from rl_sever.nn.layers import tf_variables
from rl_sever.objective.advantages import gae, vtrace
from tests.helpers import flows, make_agent, none_or_zero, term_gradients


def _rollout(agent):
    batch = agent.collector.collect().batch
    return Rollout(*(x if isinstance(x, tuple) else np.array(x) for x in batch))


def _targets(agent, rollout):
    T, N = rollout.rewards.shape
    flat = lambda x: tf.reshape(x, [T * N, *x.shape[2:]])  # noqa: E731
    next_values = tf.reshape(agent.model.value(flat(tf.constant(rollout.next_obs))), [T, N])
    fields = {"obs": tf.constant(rollout.obs), "actions": tf.constant(rollout.actions),
              "rewards": rollout.rewards, "terminated": rollout.terminated,
              "dones": rollout.dones, "logp_old": tf.constant(rollout.log_prob),
              "values": rollout.value, "next_values": next_values, "action_mask": ()}
    return fields, flat


def test_on_policy_targets_are_n_step_returns():
    agent = make_agent("impala", "CartPole-v1", n_envs=4, n_steps=16)
    rollout = _rollout(agent)  # collected with the current weights: every ratio is 1
    fields, flat = _targets(agent, rollout)
    adv, vs, values = agent.targets(fields, flat)
    np.testing.assert_allclose(values.numpy(), rollout.value, rtol=1e-5, atol=1e-6)
    ref_adv, ref_ret = gae(rollout.rewards, values, fields["next_values"], rollout.terminated,
                           rollout.dones, agent.config.gamma, 1.0)
    np.testing.assert_allclose(vs.numpy(), ref_ret.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(adv.numpy(), ref_adv.numpy(), rtol=1e-5, atol=1e-5)
    agent.close()


def test_off_policy_targets_use_the_ratios_and_carry_no_gradient():
    agent = make_agent("impala", "CartPole-v1", n_envs=4, n_steps=16, rho_bar=1.5, c_bar=0.8)
    rollout = _rollout(agent)
    rng = np.random.default_rng(0)
    behaviour = rollout.log_prob + rng.normal(0, 0.5, rollout.log_prob.shape).astype(np.float32)
    fields, flat = _targets(agent, rollout._replace(log_prob=behaviour))
    variables = tf_variables([v for vs in agent.model.modules().values() for v in vs])
    with tf.GradientTape(persistent=True) as tape:
        adv, vs, values = agent.targets(fields, flat)
    for out in (adv, vs, values):  # severed: a target never trains what it is computed from
        assert all(g is None for g in tape.gradient(out, variables))
    dist, v = agent.model(flat(fields["obs"]))
    logp = tf.reshape(dist.log_prob(flat(fields["actions"])), rollout.rewards.shape)
    ref_adv, ref_vs = vtrace(logp - behaviour, rollout.rewards, values, fields["next_values"],
                             rollout.terminated, rollout.dones, agent.config.gamma, 1.0, 1.5,
                             0.8, 1.0)
    np.testing.assert_allclose(vs.numpy(), ref_vs.numpy(), rtol=1e-6)
    np.testing.assert_allclose(adv.numpy(), ref_adv.numpy(), rtol=1e-6)
    # The ratios matter: on-policy targets differ.
    on_policy = agent.targets(_targets(agent, rollout)[0], flat)[1]
    assert not np.allclose(on_policy.numpy(), vs.numpy())
    agent.close()


def test_policy_term_does_not_reach_the_critic():
    agent = make_agent("impala", "CartPole-v1", n_envs=4, n_steps=16)
    batch = agent.collector.collect().batch
    policy, value = term_gradients(agent, batch, "policy"), term_gradients(agent, batch, "value")
    assert none_or_zero(policy["critic"]) and flows(policy["actor"])
    assert none_or_zero(value["actor"]) and flows(value["critic"])
    agent.close()


def test_recurrent_targets_replay_each_envs_memory():
    agent = make_agent("impala", "CartPole-v1", n_envs=2, n_steps=16,
                       **{"network.recurrent": "gru", "network.recurrent_size": 8})
    from rl_sever.onpolicy import sequences

    rollout = _rollout(agent)  # on-policy: the replayed values are the stored ones
    T, N = rollout.rewards.shape
    em = sequences.env_major
    starts = sequences.episode_starts(em(tf.constant(rollout.dones)))
    state0 = tf.constant(rollout.state[0])
    next_values = tf.transpose(agent.model.next_values(
        em(tf.constant(rollout.obs)), em(tf.constant(rollout.next_obs)), state0, starts))
    flat = lambda x: tf.reshape(x, [T * N, *x.shape[2:]])  # noqa: E731
    fields = {"obs": tf.constant(rollout.obs), "actions": tf.constant(rollout.actions),
              "rewards": rollout.rewards, "terminated": rollout.terminated,
              "dones": rollout.dones, "logp_old": tf.constant(rollout.log_prob),
              "values": rollout.value, "next_values": next_values, "action_mask": (),
              "state": tf.constant(rollout.state), "starts": starts}
    variables = tf_variables([v for vs in agent.model.modules().values() for v in vs])
    with tf.GradientTape(persistent=True) as tape:
        adv, vs, values = agent.targets(fields, flat)
    for out in (adv, vs, values):  # severed through the recurrent core too
        assert all(g is None for g in tape.gradient(out, variables))
    np.testing.assert_allclose(values.numpy(), rollout.value, rtol=1e-4, atol=1e-5)
    assert adv.shape == vs.shape == (T, N)
    _, ref_vs = gae(rollout.rewards, values, next_values, rollout.terminated, rollout.dones,
                    agent.config.gamma, 1.0)  # on-policy: n-step returns
    np.testing.assert_allclose(vs.numpy(), ref_vs.numpy(), rtol=1e-4, atol=1e-4)
    agent.close()
