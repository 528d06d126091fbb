"""TD3 / DDPG: exact gradient isolation, delayed actor and target updates, the flow contract."""

from __future__ import annotations

import numpy as np
import pytest

from rl_sever.audit import run_audit
from rl_sever.core.registry import get_agent_class
from tests.helpers import flows, gradients, one_batch, snapshot, tiny_agent


@pytest.fixture(scope="module", params=["float32", "bfloat16"])  # network.matmul_precision
def td3(request):
    return tiny_agent("td3", **{"network.matmul_precision": request.param})


def test_actor_loss_sends_nothing_to_critic_or_targets(td3):
    g = gradients(td3, "actor", one_batch(td3))
    assert flows(g["actor"])
    assert all(x is None for x in g["critic"])
    assert all(x is None for x in g["targets"])


def test_critic_loss_sends_nothing_to_actor_or_targets(td3):
    g = gradients(td3, "critic", one_batch(td3))
    assert flows(g["critic"])
    assert all(x is None for x in g["actor"])
    assert all(x is None for x in g["targets"])  # target actor and target critics


def test_targets_include_the_target_actor(td3):
    targets = {id(v) for v in td3.flow_modules()["targets"]}
    assert all(id(v) in targets for v in td3.target_actor.weights)
    assert all(id(v) in targets for v in td3.target_critic.weights)


def test_actor_and_targets_update_every_policy_delay_critic_updates():
    agent = tiny_agent("td3", policy_delay=2)
    actor, critic = snapshot(agent.actor.weights), snapshot(agent.critic.weights)
    targets = snapshot(agent.target_variables())
    metrics = agent.logged_metrics(agent.update(agent.sample_batch()))  # update 1: critic only
    assert "train/actor_loss" not in metrics
    assert all(np.array_equal(a, b) for a, b in zip(actor, snapshot(agent.actor.weights)))
    assert all(np.array_equal(a, b) for a, b in zip(targets, snapshot(agent.target_variables())))
    assert any(not np.array_equal(a, b) for a, b in zip(critic, snapshot(agent.critic.weights)))

    target_critic = snapshot(agent.target_critic.weights)
    metrics = agent.logged_metrics(agent.update(agent.sample_batch()))  # update 2: + actor, targets
    assert np.isfinite(metrics["train/actor_loss"])
    assert any(not np.array_equal(a, b) for a, b in zip(actor, snapshot(agent.actor.weights)))
    tau = agent.config.tau
    for new, old, src in zip(
        snapshot(agent.target_critic.weights), target_critic, snapshot(agent.critic.weights)
    ):
        np.testing.assert_allclose(new, (1 - tau) * old + tau * src, rtol=1e-6, atol=1e-7)


def test_delay_counts_across_gradient_steps_of_one_call():
    agent = tiny_agent("td3", policy_delay=2, gradient_steps=4)
    metrics = agent.logged_metrics(agent.update(agent.sample_batch()))
    assert agent.n_updates.numpy() == 4
    assert np.isfinite(metrics["train/actor_loss"])  # averaged over the 2 actor updates


def test_exploration_noise_and_greedy_actions_stay_in_bounds(td3):
    obs = np.zeros((5, 3), np.float32)
    for deterministic in (True, False):
        a = td3.predict(obs, deterministic=deterministic)
        assert a.shape == (5, 1) and np.all(np.abs(a) <= 2.0)
    greedy = td3.predict(obs)
    np.testing.assert_array_equal(td3.predict(obs), greedy)  # deterministic: same actions
    noisy = td3.predict(obs, deterministic=False)
    assert not np.array_equal(noisy, greedy)  # exploration noise (action_noise=0.1) is added
    assert np.all(np.abs(noisy - greedy) <= 2.0 * 5 * 0.1 + 1e-6)  # within 5 sigma (env units)


def test_ddpg_is_td3_with_one_critic_no_smoothing_no_delay():
    ddpg = get_agent_class("ddpg")
    cfg = ddpg.config_cls()
    assert (cfg.n_critics, cfg.policy_delay, cfg.target_policy_noise) == (1, 1, 0.0)
    agent = tiny_agent("ddpg")
    assert agent.algo == "ddpg" and agent.critic.members == 1
    actor = snapshot(agent.actor.weights)
    metrics = agent.logged_metrics(agent.update(agent.sample_batch()))
    assert np.isfinite(metrics["train/actor_loss"])
    assert any(not np.array_equal(a, b) for a, b in zip(actor, snapshot(agent.actor.weights)))
    run_audit(agent, agent.sample_batch(), enforce=True)


def test_td3_contract_with_shared_encoder_trained_by_the_actor():
    agent = tiny_agent(
        "td3",
        **{"network.shared_encoder": True, "network.encoder_grad_from": "actor", "aux": ["vae"]},
    )
    matrix, _ = run_audit(agent, agent.sample_batch(), enforce=True)
    assert matrix.status("actor", "encoder") == "flow"
    assert matrix.status("critic", "encoder") == "none"
    assert matrix.status("vae", "encoder") == "none"  # aux not in encoder_grad_from
    assert matrix.status("vae", "decoder") == "flow"
