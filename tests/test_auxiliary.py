"""Auxiliary modules: what each loss reaches, the VAE's KL and shapes, weights, config errors."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from rl_sever.audit import run_audit
from rl_sever.auxiliary import AuxContext, AuxiliaryConfig, make_auxiliary
from rl_sever.config.spaces import ActionSpec
from rl_sever.errors import ConfigError, UnknownNameError
from tests.helpers import snapshot, tiny_agent, tiny_config

ALL_AUX = ["vae", "reward", "inverse"]
OWN = {"vae": "decoder", "reward": "reward_head", "inverse": "inverse_head"}


@pytest.mark.parametrize("grad_from", ["critic+aux", "critic"])
def test_each_aux_loss_reaches_only_its_own_networks_and_maybe_the_encoder(grad_from):
    agent = tiny_agent(
        "sac",
        aux=ALL_AUX,
        **{"network.shared_encoder": True, "network.encoder_grad_from": grad_from},
    )
    matrix, violations = run_audit(agent, agent.sample_batch(), enforce=True)
    assert violations == []
    for name in ALL_AUX:
        reached = {m for m in matrix.modules if matrix.status(name, m) == "flow"}
        expected = {OWN[name]} | ({"encoder"} if grad_from == "critic+aux" else set())
        assert reached == expected, name
        for module in ("actor", "critic", "alpha", "targets"):
            assert matrix.status(name, module) == "none", (name, module)
    # and no actor/critic loss reaches an auxiliary module
    for loss in ("actor", "critic", "alpha"):
        for own in OWN.values():
            assert matrix.status(loss, own) == "none"


def test_vae_kl_is_the_closed_form_gaussian_kl():
    action = ActionSpec(
        "box", (1,), low=np.array([-1.0], np.float32), high=np.array([1.0], np.float32)
    )
    vae = make_auxiliary(
        ["vae"], 4, (3,), tf.float32, action, AuxiliaryConfig(latent_dim=2, beta=0.5)
    )["vae"]
    feats = tf.constant(np.random.default_rng(0).normal(size=(5, 4)), tf.float32)
    obs = tf.zeros((5, 3))
    loss, parts = vae.loss(
        AuxContext(
            {"obs": obs, "actions": tf.zeros((5, 1))}, feats, lambda o: o, tf.constant([1, 2])
        )
    )
    q = vae.posterior(feats)
    mu, sd = q.loc.numpy().astype(np.float64), q.scale.numpy().astype(np.float64)
    kl = np.mean(np.sum(0.5 * (mu**2 + sd**2 - 1) - np.log(sd), axis=-1))
    np.testing.assert_allclose(parts["kl"].numpy(), kl, rtol=1e-5)
    np.testing.assert_allclose(loss.numpy(), parts["recon"].numpy() + 0.5 * kl, rtol=1e-5)


def test_vae_image_decoder_matches_odd_frame_sizes():
    action = ActionSpec(
        "box", (1,), low=np.array([-1.0], np.float32), high=np.array([1.0], np.float32)
    )
    vae = make_auxiliary(["vae"], 8, (18, 14, 6), tf.uint8, action, AuxiliaryConfig(latent_dim=3))[
        "vae"
    ]
    assert vae.reconstruct(tf.zeros((2, 3))).shape == (2, 18, 14, 6)


def test_inverse_dynamics_handles_discrete_actions():
    action = ActionSpec("discrete", (), n=3)
    inv = make_auxiliary(["inverse"], 4, (2,), tf.float32, action, AuxiliaryConfig())["inverse"]
    feats = tf.random.normal((6, 4))
    ctx = AuxContext(
        {
            "obs": tf.zeros((6, 2)),
            "actions": tf.constant([0, 1, 2, 0, 1, 2]),
            "next_obs": tf.zeros((6, 2)),
        },
        feats,
        lambda o: tf.random.normal((6, 4)),
        tf.constant([0, 0]),
    )
    with tf.GradientTape() as tape:
        loss, _ = inv.loss(ctx)
    assert np.isfinite(loss.numpy())
    grads = tape.gradient(loss, inv.modules()["inverse_head"])
    assert all(g is not None for g in grads)


def test_zero_aux_weight_leaves_its_networks_bit_identical():
    agent = tiny_agent(
        "sac",
        aux=["vae", "reward"],
        aux_weights={"vae": 0.0},
        **{"network.shared_encoder": True, "network.encoder_grad_from": "critic+aux"},
    )
    assert agent.loss_weights["vae"].numpy() == 0.0 and agent.loss_weights["reward"].numpy() == 1.0
    decoder = snapshot(agent.flow_modules()["decoder"])
    head = snapshot(agent.flow_modules()["reward_head"])
    agent.update(agent.sample_batch())
    assert all(
        np.array_equal(a, b) for a, b in zip(decoder, snapshot(agent.flow_modules()["decoder"]))
    )
    assert any(
        not np.array_equal(a, b)
        for a, b in zip(head, snapshot(agent.flow_modules()["reward_head"]))
    )


def test_n_step_agents_give_aux_losses_one_step_transitions():
    agent = tiny_agent("sac", n_step=3, aux=["reward"], **{"network.shared_encoder": True})
    batch = agent.sample_batch()
    assert batch.keys()[-2:] == ["step_rewards", "step_next_obs"]
    assert batch.step_next_obs.shape == batch.next_obs.shape
    agent.update(batch)
    plain = tiny_agent("sac", n_step=3, **{"network.shared_encoder": True}).sample_batch()
    assert "step_rewards" not in plain and plain.step_rewards == ()  # only when aux needs them


def test_aux_config_errors():
    with pytest.raises(ConfigError, match="unknown auxiliary module"):
        tiny_config("sac", aux=["vea"])
    with pytest.raises(ConfigError, match="not in aux"):
        tiny_config("sac", aux=["vae"], aux_weights={"reward": 1.0})
    with pytest.raises(ConfigError, match="encoder_grad_from"):
        tiny_config("sac", **{"network.encoder_grad_from": "critic+policy"})
    with pytest.raises(ConfigError, match="shared encoder"):
        tiny_agent("sac", fill=0, aux=["vae"])
    with pytest.raises(UnknownNameError):
        make_auxiliary(
            ["nope"], 4, (2,), tf.float32, ActionSpec("discrete", (), n=2), AuxiliaryConfig()
        )


@pytest.mark.parametrize("grad_from", ["both+aux", "both"])
def test_ppo_with_aux_losses_keeps_their_contract(grad_from):
    from agents.ppo import PPO
    from tests.helpers import collect_batch
    from tests.helpers import tiny_config as onpolicy_config

    cfg = onpolicy_config(
        "ppo",
        {
            "network.shared_encoder": True,
            "aux": ["vae", "inverse"],
            "network.encoder_grad_from": grad_from,
        },
    )
    agent = PPO("CartPole-v1", cfg, logdir=None)
    matrix, _ = run_audit(agent, collect_batch(agent), enforce=True)
    encoder = "flow" if grad_from == "both+aux" else "none"
    assert matrix.status("vae", "encoder") == encoder
    assert matrix.status("inverse", "encoder") == encoder
    for loss in ("vae", "inverse"):
        assert matrix.status(loss, "actor") == "none" and matrix.status(loss, "critic") == "none"
    assert (
        matrix.status("policy", "decoder") == "none" and matrix.status("value", "decoder") == "none"
    )
    last = {}
    agent.learn(64, progress=False, callback=lambda a, logged: last.update(logged) or True)
    assert {"loss/vae", "loss/vae_recon", "loss/vae_kl", "loss/inverse"} <= set(last)


def test_ppo_aux_needs_a_shared_encoder():
    from agents.ppo import PPO
    from tests.helpers import tiny_config as onpolicy_config

    with pytest.raises(ConfigError, match="shared_encoder"):
        PPO("CartPole-v1", onpolicy_config("ppo", {"aux": ["vae"]}), logdir=None)
