"""Exact gradient isolation on real agents (PPO and A2C, Discrete and Box actions).

Per loss term (agent.flow_losses): the policy loss gives None or exactly zero gradient to every
critic-only variable, the value loss to every actor-only variable. With a shared encoder, one
compiled update moves the encoder iff the loss that is switched on (the others weighted zero
through agent.loss_weights) belongs to a head named by network.encoder_grad_from.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import tensorflow as tf

from rl_sever.audit import FLOW, NONE, ZERO, Flow, run_audit
from rl_sever.core.rollout import Rollout
from rl_sever.errors import FlowContractError
from tests.helpers import collect_batch, make_agent

ALGOS = ["ppo", "a2c"]
ENVS = ["CartPole-v1", "Pendulum-v1"]
ENCODERS = ["separate", "actor", "critic", "both"]


@functools.cache
def agent_and_batch(algo: str, env_id: str, encoder: str):
    """A tiny agent and one collected rollout, built once per combination for this module."""
    net = {"network.shared_encoder": encoder != "separate"}
    if encoder != "separate":
        net["network.encoder_grad_from"] = encoder
    agent = make_agent(algo, env_id, net, ent_coef=0.01)
    return agent, collect_batch(agent)


def module_gradients(agent, batch) -> dict[str, dict[str, list]]:
    """loss name -> module name -> one gradient (or None) per variable of the module."""
    modules = agent.flow_modules()
    out = {}
    for loss_name, fn in agent.flow_losses(batch).items():
        with tf.GradientTape() as tape:
            value = fn()
        grads = tape.gradient(value, {m: list(vs) for m, vs in modules.items()})
        out[loss_name] = grads
    return out


def is_blocked(g) -> bool:
    return g is None or not np.any(tf.convert_to_tensor(g).numpy())


def is_flowing(g) -> bool:
    return g is not None and bool(np.any(tf.convert_to_tensor(g).numpy()))


combos = pytest.mark.parametrize(
    "algo,env_id,encoder", [(a, e, enc) for a in ALGOS for e in ENVS for enc in ENCODERS]
)


@combos
def test_loss_terms_isolate_actor_and_critic(algo, env_id, encoder):
    agent, batch = agent_and_batch(algo, env_id, encoder)
    grads = module_gradients(agent, batch)
    # Forbidden directions: None or exactly zero for every variable.
    assert all(is_blocked(g) for g in grads["policy"]["critic"])
    assert all(is_blocked(g) for g in grads["entropy"]["critic"])
    assert all(is_blocked(g) for g in grads["value"]["actor"])
    # Intended directions really flow.
    assert any(is_flowing(g) for g in grads["policy"]["actor"])
    assert any(is_flowing(g) for g in grads["value"]["critic"])
    if encoder == "separate":
        assert set(grads["policy"]) == {"actor", "critic"}
        return
    # The shared encoder: trained only by the losses of the heads encoder_grad_from names.
    actor_trains = encoder in ("actor", "both")
    critic_trains = encoder in ("critic", "both")
    policy_enc, value_enc = grads["policy"]["encoder"], grads["value"]["encoder"]
    assert all(map(is_flowing, policy_enc)) if actor_trains else all(map(is_blocked, policy_enc))
    assert all(map(is_flowing, value_enc)) if critic_trains else all(map(is_blocked, value_enc))
    if not actor_trains:
        assert all(is_blocked(g) for g in grads["entropy"]["encoder"])


@combos
def test_audit_contract_holds(algo, env_id, encoder):
    agent, batch = agent_and_batch(algo, env_id, encoder)
    matrix, violations = run_audit(agent, batch, enforce=True)
    assert violations == []
    assert matrix.status("policy", "critic") in (NONE, ZERO)
    assert matrix.status("value", "actor") in (NONE, ZERO)
    assert matrix.status("policy", "actor") == FLOW
    assert matrix.status("value", "critic") == FLOW
    if encoder != "separate":
        reaches = {"policy": encoder in ("actor", "both"), "value": encoder in ("critic", "both")}
        for loss, expected in reaches.items():
            assert (matrix.status(loss, "encoder") == FLOW) == expected


def test_audit_catches_a_leak_on_a_real_agent(monkeypatch):
    # The critic trains the shared encoder here; a contract claiming it must not is broken.
    agent, batch = agent_and_batch("ppo", "CartPole-v1", "both")
    strict = agent.flow_contract().with_loss("value", Flow(must={"critic"}), replace=True)
    monkeypatch.setattr(agent, "flow_contract", lambda: strict)
    with pytest.raises(FlowContractError, match="value.*encoder"):
        run_audit(agent, batch, enforce=True)


# -- one compiled update with only one loss switched on ---------------------------------------
def snapshot(agent) -> list[tuple[tf.Variable, np.ndarray]]:
    """Every variable an update touches (parameters, optimizer slots, RNG, loss weights)."""
    variables = [v for vs in agent.flow_modules().values() for v in vs]
    for opt in agent.optimizer.optimizers.values():
        variables += list(opt.variables)
    variables += [agent.seed_counter, *agent.loss_weights.values()]
    return [(v, np.array(v.numpy(), copy=True)) for v in variables]


def restore(saved) -> None:
    for v, value in saved:
        v.assign(value)


def values_of(agent) -> dict[str, list[np.ndarray]]:
    return {m: [np.array(v.numpy(), copy=True) for v in vs] for m, vs in agent.flow_modules().items()}


# PPO on both action kinds; A2C shares the network and update code, so Discrete suffices.
@pytest.mark.parametrize("algo,env_id", [("ppo", "CartPole-v1"), ("ppo", "Pendulum-v1"),
                                         ("a2c", "CartPole-v1")])
@pytest.mark.parametrize("encoder", ["actor", "critic", "both"])
def test_one_update_moves_encoder_iff_named_head_loss_reaches_it(algo, env_id, encoder):
    agent, batch = agent_and_batch(algo, env_id, encoder)
    discrete = agent.action.kind == "discrete"
    actor_trains = encoder in ("actor", "both")
    critic_trains = encoder in ("critic", "both")
    expected_encoder = {
        "policy": actor_trains,
        "value": critic_trains,
        # A Gaussian's entropy depends on log_std only, never on the encoder's features.
        "entropy": actor_trains and discrete,
    }
    initial = snapshot(agent)
    args = list(Rollout.of(batch))
    try:
        for active in ("policy", "value", "entropy"):
            restore(initial)  # fresh parameters and optimizer slots for each case
            for name, weight in agent.loss_weights.items():
                weight.assign(1.0 if name == active else 0.0)
            before = values_of(agent)
            agent.train_fn(*args)
            after = values_of(agent)
            changed = {m: [not np.array_equal(b, a) for b, a in zip(before[m], after[m])]
                       for m in before}
            # Equal before and after, bit for bit, where the active loss cannot reach.
            assert any(changed["actor"]) == (active in ("policy", "entropy")), active
            assert any(changed["critic"]) == (active == "value"), active
            if expected_encoder[active]:
                assert all(changed["encoder"]), active
            else:
                assert not any(changed["encoder"]), active
    finally:
        restore(initial)
    assert agent.train_fn.experimental_get_tracing_count() == 1
