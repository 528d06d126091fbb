"""TQC's own math against NumPy: the truncated mixture of the target critics' quantiles and the
quantile Huber loss (the every-algorithm suite covers its runs, contract and checkpoints)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from rl_sever.nn.distributions import squashed_gaussian_sample
from tests.helpers import one_batch, tiny_agent


def quantile_huber_numpy(q: np.ndarray, y: np.ndarray) -> float:
    """q [critics, batch, quantiles], y [batch, atoms]; kappa 1; the mean over critics, batch,
    quantiles and atoms (sb3-contrib's TQC: sum_over_quantiles=False)."""
    n = q.shape[-1]
    tau = (np.arange(n) + 0.5) / n
    delta = y[None, :, None, :] - q[..., None]
    huber = np.where(np.abs(delta) > 1.0, np.abs(delta) - 0.5, 0.5 * delta**2)
    return float((np.abs(tau[:, None] - (delta < 0)) * huber).mean())


def test_quantile_huber_loss_matches_numpy():
    agent = tiny_agent("tqc", fill=0, n_quantiles=5, top_quantiles_to_drop_per_net=1)
    rng = np.random.default_rng(0)
    q = rng.normal(size=(2, 7, 5)).astype(np.float32) * 2
    y = rng.normal(size=(7, 8)).astype(np.float32) * 2
    got = float(agent.critic_loss(tf.constant(q), tf.constant(y)))
    np.testing.assert_allclose(got, quantile_huber_numpy(q.astype(np.float64), y), rtol=1e-5)
    agent.close()


def test_quantile_huber_loss_matches_sb3_contrib():
    """Against sb3-contrib's own function where the `bench` extra is installed."""
    torch = pytest.importorskip("torch")
    utils = pytest.importorskip("sb3_contrib.common.utils")
    agent = tiny_agent("tqc", fill=0, n_quantiles=5, top_quantiles_to_drop_per_net=1)
    rng = np.random.default_rng(1)
    q = rng.normal(size=(2, 7, 5)).astype(np.float32) * 2  # [critics, batch, quantiles]
    y = rng.normal(size=(7, 8)).astype(np.float32) * 2
    theirs = utils.quantile_huber_loss(torch.tensor(q.transpose(1, 0, 2)), torch.tensor(y)[:, None],
                                       sum_over_quantiles=False)
    np.testing.assert_allclose(float(agent.critic_loss(tf.constant(q), tf.constant(y))),
                               float(theirs), rtol=1e-5)
    agent.close()


def test_target_keeps_the_lowest_atoms_of_the_pooled_quantiles():
    agent = tiny_agent("tqc", n_quantiles=5, top_quantiles_to_drop_per_net=2)
    mb = one_batch(agent)
    y = agent.td_target(mb, lambda: agent.features(mb["next_obs"]), tf.constant([0, 1], tf.int32))
    # 2 critics x (5 - 2) kept quantiles, sorted ascending in every row (a sorted prefix).
    assert tuple(y.shape) == (agent.config.batch_size, 6)
    assert np.all(np.diff(y.numpy(), axis=1) >= 0)
    # The same target from NumPy: pool, sort, keep the lowest, subtract alpha * log pi.
    mean, log_std = agent._policy(agent.features(mb["next_obs"]))
    next_actions, next_logp = squashed_gaussian_sample(mean, log_std, tf.constant([0, 1], tf.int32))
    z = agent.target_critic(tf.concat([agent.target_features(mb["next_obs"]), next_actions],
                                      -1)).numpy()
    pooled = np.sort(z.transpose(1, 0, 2).reshape(agent.config.batch_size, -1), axis=1)[:, :6]
    soft = pooled - np.exp(agent.log_alpha.numpy()) * next_logp.numpy()[:, None]
    not_done = mb["discounts"].numpy() * (1.0 - mb["terminated"].numpy())
    expected = mb["rewards"].numpy()[:, None] + not_done[:, None] * soft
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-5, atol=1e-5)
    agent.close()


def test_the_actor_reads_the_mean_of_every_quantile():
    agent = tiny_agent("tqc", n_quantiles=3, top_quantiles_to_drop_per_net=1)
    mb = one_batch(agent)
    thunks, extras = agent.actor_outputs(mb, tf.constant([0, 2], tf.int32))
    q, actions = thunks["q"](), thunks["actions"]()
    z = agent.critic(tf.concat([agent.features(mb["obs"]), actions], -1)).numpy()
    # (the actor reads the critic's weights severed: the same values, another kernel path)
    np.testing.assert_allclose(q.numpy(), z.mean(axis=(0, 2)), rtol=1e-3, atol=1e-4)
    assert "ent_coef" in extras
    agent.close()
