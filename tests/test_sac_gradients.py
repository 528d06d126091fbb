"""SAC: exact gradient isolation, Polyak averaging, the entropy coefficient, the flow contract."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from rl_sever.audit import run_audit
from rl_sever.errors import FlowContractError
from rl_sever.isolation import sever
from tests.helpers import flows, gradients, none_or_zero, one_batch, snapshot, tiny_agent

ENCODER_AUX = {
    "network.shared_encoder": True,
    "aux": ["vae", "reward", "inverse"],
    "network.encoder_grad_from": "critic+aux",
}


# Both precisions of the hidden matmuls (network.matmul_precision): the same isolation, exactly.
@pytest.fixture(scope="module", params=["float32", "bfloat16"])
def sac(request):
    agent = tiny_agent("sac", **{"network.matmul_precision": request.param})
    assert agent.matmul_precision == request.param
    return agent


@pytest.fixture(scope="module", params=["float32", "bfloat16"])
def sac_encoder(request):
    return tiny_agent("sac", **ENCODER_AUX, **{"network.matmul_precision": request.param})


def test_actor_loss_sends_nothing_to_critic_alpha_or_targets(sac):
    g = gradients(sac, "actor", one_batch(sac))
    assert flows(g["actor"])
    # Severed weights: disconnected, not merely zero.
    assert all(x is None for x in g["critic"])
    assert all(x is None for x in g["alpha"])
    assert all(x is None for x in g["targets"])


def test_critic_loss_sends_nothing_to_actor_alpha_or_targets(sac):
    g = gradients(sac, "critic", one_batch(sac))
    assert flows(g["critic"])
    for module in ("actor", "alpha", "targets"):
        assert all(x is None for x in g[module]), module


def test_alpha_is_trained_only_by_its_own_loss(sac):
    mb = one_batch(sac)
    g = gradients(sac, "alpha", mb)
    assert flows(g["alpha"])
    for module in ("actor", "critic", "targets"):
        assert all(x is None for x in g[module]), module
    for loss in ("actor", "critic"):
        assert none_or_zero(gradients(sac, loss, mb)["alpha"]), loss
    # Only the alpha optimizer lists log_alpha.
    owners = [
        name
        for name, opt in sac.optimizers.items()
        if any(v is sac.log_alpha for v in opt.all_variables)
    ]
    assert owners == ["alpha"]


def test_actor_gradient_is_the_reparameterised_policy_gradient(sac):
    # Sanity for the severed-weight critic: the actor still receives dQ/da (not just entropy).
    mb = one_batch(sac)
    with_q = gradients(sac, "actor", mb)["actor"]
    sac.log_alpha.assign(math.log(1e-8))  # ~no entropy term: what is left is -Q(s, pi(s))
    try:
        q_only = gradients(sac, "actor", mb)["actor"]
    finally:
        sac.log_alpha.assign(0.0)
    assert flows(q_only) and flows(with_q)


def test_nothing_reaches_the_targets_with_encoder_and_aux(sac_encoder):
    matrix, violations = run_audit(sac_encoder, sac_encoder.sample_batch(), enforce=False)
    assert violations == []
    for loss in matrix.losses:
        assert matrix.status(loss, "targets") == "none", loss
    assert set(matrix.losses) == {"critic", "actor", "alpha", "vae", "reward", "inverse"}


def test_polyak_update_is_exact(sac):
    batch = sac.sample_batch()
    target = snapshot(sac.target_critic.weights)
    sac.update(batch)
    online = snapshot(sac.critic.weights)
    # The same float32 arithmetic as the update: bit-identical on any CPU (elementwise ops).
    keep, tau = np.float32(1.0 - sac.config.tau), np.float32(sac.config.tau)
    for new, old, src in zip(snapshot(sac.target_critic.weights), target, online, strict=True):
        np.testing.assert_array_equal(new, keep * old + tau * src.astype(np.float32))
    assert any(
        not np.array_equal(a, b) for a, b in zip(snapshot(sac.target_critic.weights), target)
    )


def test_update_moves_each_module_by_its_own_optimizer():
    agent = tiny_agent("sac")
    before = {m: snapshot(v) for m, v in agent.flow_modules().items()}
    stats = agent.update(agent.sample_batch())
    after = {m: snapshot(v) for m, v in agent.flow_modules().items()}
    for module in ("actor", "critic", "alpha", "targets"):
        assert any(not np.array_equal(a, b) for a, b in zip(before[module], after[module])), module
    metrics = agent.logged_metrics(stats)
    for key in ("train/actor_loss", "train/critic_loss", "train/ent_coef", "train/ent_coef_loss"):
        assert np.isfinite(metrics[key]), key
    assert metrics["train/n_updates"] == 1.0


@pytest.mark.parametrize("grad_from, moves", [("critic", False), ("actor", True)])
def test_encoder_grad_from_critic_keeps_encoder_bit_identical_under_actor_loss(grad_from, moves):
    agent = tiny_agent(
        "sac", **{"network.shared_encoder": True, "network.encoder_grad_from": grad_from}
    )
    g = gradients(agent, "actor", one_batch(agent))
    assert (all(x is None for x in g["encoder"])) is (not moves)
    # Only the actor side learns: with a zero critic weight Adam's first step is exactly 0.
    agent.loss_weights["critic"].assign(0.0)
    encoder, actor = snapshot(agent.encoder.weights), snapshot(agent.actor.weights)
    agent.update(agent.sample_batch())
    assert any(not np.array_equal(a, b) for a, b in zip(actor, snapshot(agent.actor.weights)))
    same = all(np.array_equal(a, b) for a, b in zip(encoder, snapshot(agent.encoder.weights)))
    assert same is (not moves)


def test_contract_holds_for_the_default_and_encoder_configs(sac, sac_encoder):
    for agent in (sac, sac_encoder):
        run_audit(agent, agent.sample_batch(), enforce=True)


def test_a_leaking_actor_loss_fails_the_audit(monkeypatch):
    agent = tiny_agent("sac")

    def leaky_actor_terms(mb, seed):
        feat = agent.features(mb["obs"])
        mean, log_std = agent._policy(feat)
        actions = tf.tanh(mean)
        q = agent.critic(tf.concat([sever(feat), actions], -1))  # weights NOT severed: leaks
        return {"actor": -tf.reduce_mean(q), "alpha": -agent.log_alpha * 1.0}, {}

    monkeypatch.setattr(agent, "actor_terms", leaky_actor_terms)
    with pytest.raises(FlowContractError, match="leak: loss 'actor'.*'critic'"):
        run_audit(agent, agent.sample_batch(), enforce=True)


def test_fixed_entropy_coefficient_has_no_alpha_module_or_loss():
    agent = tiny_agent("sac", learn_ent_coef=False, ent_coef=0.2)
    assert "alpha" not in agent.flow_modules() and "alpha" not in agent.optimizers
    assert set(agent.loss_terms(one_batch(agent))) == {"critic", "actor"}
    before = agent.log_alpha.numpy()
    metrics = agent.logged_metrics(agent.update(agent.sample_batch()))
    assert agent.log_alpha.numpy() == before
    assert metrics["train/ent_coef"] == pytest.approx(0.2)
    assert "train/ent_coef_loss" not in metrics


def test_target_entropy_defaults_to_minus_action_dim(sac):
    assert sac.target_entropy == -1.0


def test_squashed_log_prob_matches_change_of_variables():
    from rl_sever.nn.distributions import squashed_gaussian_sample

    mean = tf.constant([[0.3, -1.0], [2.0, 0.0]])
    log_std = tf.constant([[-0.5, 0.2], [0.0, -1.0]])
    a, logp = squashed_gaussian_sample(mean, log_std, tf.constant([1, 2]))
    u = np.arctanh(np.clip(a.numpy().astype(np.float64), -1 + 1e-12, 1 - 1e-12))
    std = np.exp(log_std.numpy())
    log_n = -0.5 * ((u - mean.numpy()) / std) ** 2 - np.log(std) - 0.5 * np.log(2 * np.pi)
    expected = np.sum(log_n - np.log(1 - np.tanh(u) ** 2), -1)
    np.testing.assert_allclose(logp.numpy(), expected, rtol=1e-3, atol=1e-3)
