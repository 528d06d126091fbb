"""Acting on the host (rl_sever.onpolicy.host_policy): the NumPy policy is the compiled
policy's function — greedy actions equal, sampled actions from the same distribution — and it
serves exactly the rollouts where it applies."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from rl_sever.core.evaluation import evaluate
from rl_sever.errors import ConfigError
from tests.helpers import TINY_MD_ID, tiny_agent

CASES = [("ppo", "CartPole-v1"), ("a2c", "Pendulum-v1"), ("ppo", TINY_MD_ID)]


def host_of(agent):
    host = agent.collector.host
    assert host is not None
    host.sync(0)
    return host


def random_obs(agent, n: int, seed: int = 0) -> np.ndarray:
    space = agent.env.single_observation_space
    space.seed(seed)
    return np.stack([space.sample() for _ in range(n)]).astype(np.float32).clip(-5, 5)


@pytest.mark.parametrize("algo, env_id", CASES)
@pytest.mark.parametrize("activation", ["tanh", "relu", "elu", "silu"])
def test_greedy_actions_equal_the_compiled_policys(algo, env_id, activation):
    agent = tiny_agent(algo, env_id, **{"network.hidden_sizes": [64, 64],
                                         "network.activation": activation})
    obs = random_obs(agent, 512)
    host, compiled = host_of(agent).mode(obs), agent.greedy_fn(obs).numpy()
    if agent.action.kind == "box":
        np.testing.assert_allclose(host, compiled, rtol=1e-5, atol=1e-6)
    else:
        np.testing.assert_array_equal(host, compiled)
        assert host.dtype == compiled.dtype
    agent.close()


@pytest.mark.parametrize("algo, env_id", CASES)
def test_stored_log_probs_and_values_equal_the_compiled_networks(algo, env_id):
    """What a host rollout stores of acting (log pi(a), V(s)) is the compiled model's."""
    agent = tiny_agent(algo, env_id, **{"network.hidden_sizes": [64, 64]})
    obs = random_obs(agent, 256)
    host = host_of(agent)
    actions = host.sample(obs)
    log_prob, value = host.behaviour(obs.reshape(32, 8, *obs.shape[1:]),
                                     actions.reshape(32, 8, *actions.shape[1:]))
    dist, v = agent.model(tf.constant(obs))
    np.testing.assert_allclose(log_prob.ravel(), dist.log_prob(actions).numpy(), rtol=1e-4,
                               atol=1e-5)
    np.testing.assert_allclose(value.ravel(), v.numpy(), rtol=1e-5, atol=1e-5)
    assert log_prob.shape == value.shape == (32, 8)
    agent.close()


@pytest.mark.parametrize("algo, env_id", CASES)
def test_sampled_actions_follow_the_compiled_distribution(algo, env_id):
    agent = tiny_agent(algo, env_id)
    if agent.model.log_std is not None:
        agent.model.log_std.assign(tf.fill(agent.model.log_std.shape, -0.5))
    one = random_obs(agent, 1, seed=3)
    n = 40_000
    batch = np.repeat(one, n, axis=0)
    samples = host_of(agent).sample(batch)
    dist = agent.model.distribution(tf.constant(one))
    if agent.action.kind == "box":
        mean, std = dist.loc.numpy()[0], dist.scale_diag.numpy()[0]
        # 6 standard errors: a false alarm about once in 10^8 per dimension
        assert np.all(np.abs(samples.mean(0) - mean) < 6 * std / np.sqrt(n))
        assert np.all(np.abs(samples.std(0) / std - 1) < 6 / np.sqrt(2 * n))
    else:
        columns = samples.reshape(n, -1)
        nvec = agent.action.nvec if agent.action.kind == "multidiscrete" else [agent.action.n]
        tf_samples = agent.model.head.sample(
            agent.model.distribution(tf.constant(batch[:n])), tf.constant([5, 6])).numpy()
        tf_columns = tf_samples.reshape(n, -1)
        for j, k in enumerate(nvec):
            freq = np.bincount(columns[:, j], minlength=k) / n
            ref = np.bincount(tf_columns[:, j], minlength=k) / n
            # two samples of one categorical: |p1 - p2| within 6 standard errors
            se = np.sqrt(2 * np.maximum(ref * (1 - ref), 1e-4) / n)
            assert np.all(np.abs(freq - ref) < 6 * se), (freq, ref)
    agent.close()


def test_rollouts_use_the_host_policy_only_where_it_applies(monkeypatch):
    agent = tiny_agent("ppo", "CartPole-v1")
    calls = []
    monkeypatch.setattr(agent.collector, "act", lambda obs: calls.append(1))
    agent.learn(32, progress=False)  # the compiled act step is never called
    assert calls == [] and agent.collector.host is not None
    agent.close()
    assert tiny_agent("ppo", "CartPole-v1", host_act="off").collector.host is None
    pixels = tiny_agent("ppo", "Pixels/CartPole-v1")
    assert pixels.collector.host is None  # a CNN encoder: compiled acting
    pixels.close()
    with pytest.raises(ConfigError, match="host_act=on cannot apply: the policy reads an encoder"):
        _ = tiny_agent("ppo", "Pixels/CartPole-v1", host_act="on").collector
    with pytest.raises(ConfigError, match="host_act=on cannot apply: activation gelu"):
        gelu = tiny_agent("ppo", "CartPole-v1", host_act="on", **{"network.activation": "gelu"})
        _ = gelu.collector


def test_host_acting_follows_each_update_and_reproduces_runs():
    runs = []
    for _ in range(2):
        tf.keras.utils.set_random_seed(0)
        agent = tiny_agent("ppo", "CartPole-v1", seed=4)
        agent.learn(96, progress=False)
        host = agent.collector.host
        runs.append((np.array(agent.collector.buffer.data.actions), host.weights[0][0].copy()))
        # the last update call returned its weights to the host copy: the current ones
        np.testing.assert_array_equal(host.weights[0][0], agent.model.pi.kernels[0].numpy())
        assert not host.stale
        agent.close()
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])


def test_every_host_action_uses_the_current_weights_after_updates_callbacks_and_set_weights():
    """The update call hands the new weights to the host copy; a callback or a user's
    set_weights between learn() calls makes it read them again. At every acting step the host
    copy equals the network."""
    agent = tiny_agent("a2c", "CartPole-v1")
    host, kernel = agent.collector.host, agent.model.pi.kernels[0]
    checked, reads = [], []
    sample, read = host.sample, host._read

    def checking_sample(obs):
        np.testing.assert_array_equal(host.weights[0][0], kernel.numpy())
        checked.append(1)
        return sample(obs)

    host.sample = checking_sample
    host._read = lambda: reads.append(1) or read()

    def halve(agent, _metrics):
        kernel.assign(kernel * 0.5)

    agent.learn(160, progress=False, callback=halve)
    n_rollouts = 160 // (agent.config.n_steps * agent.config.n_envs)
    assert len(checked) == 160 // agent.config.n_envs
    assert len(reads) == n_rollouts  # the first rollout, then one after each callback
    kernel.assign(tf.ones_like(kernel))
    agent.learn(32, progress=False)
    assert len(reads) == n_rollouts + 1
    agent.close()


@pytest.mark.parametrize("recurrent", ["none", "lstm"])
def test_evaluations_act_greedily_on_the_host_with_the_current_weights(recurrent):
    agent = tiny_agent("ppo", "CartPole-v1", **{"network.recurrent": recurrent})
    host = agent._greedy_host()  # its own NumPy copy, not the collector's
    assert host is not None and host is not agent.collector.host
    compiled, reads = [], []
    greedy, read = agent.greedy_fn, host._read
    agent.greedy_fn = lambda *args: compiled.append(1) or greedy(*args)
    host._read = lambda: reads.append(1) or read()
    kernel = agent.model.pi.kernels[0]
    kernel.assign(kernel * 4.0)  # a user's change before the evaluation
    on_host = evaluate(agent, 4, max_envs=2)
    assert compiled == [] and len(reads) == 1  # read once for the whole evaluation
    np.testing.assert_array_equal(host.weights[0][0], kernel.numpy())
    kernel.assign(-kernel)  # changed between two evaluations (an update, a user)
    on_host = evaluate(agent, 4, max_envs=2)
    assert len(reads) == 2 and compiled == []
    np.testing.assert_array_equal(host.weights[0][0], kernel.numpy())
    agent._greedy_copy = (None,)  # the compiled greedy policy: the same episodes
    assert evaluate(agent, 4, max_envs=2) == on_host and compiled
    obs, n = random_obs(agent, 8), len(compiled)
    agent.predict(obs)  # outside an evaluation: the compiled policy
    assert len(compiled) == n + 1
    agent.close()
