"""Custom loss terms on SAC and TD3: the default objectives (SAC: actor, critic, alpha; TD3:
actor, critic) are unchanged, terms are re-weighted, replaced and added by name, each custom
term joins the optimizer group it trains, and its contract is enforced by the audit."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import tensorflow as tf

from rl_sever import cli
from rl_sever.errors import ConfigError, FlowContractError
from rl_sever.loss_terms import LossTerm, loss_term
from tests.conftest import read_event_tensors
from tests.offpolicy_helpers import tiny_agent, tiny_config

# Captured from the code before SAC/TD3 had loss terms: one compiled update on fixed_batch
# (tests.offpolicy_helpers tiny configs, seed 0, fill=0): the raw metric vector and a sha256
# of every module's parameters afterwards (flow_modules, sorted by name).
PINNED = {'sac': {'stats': [0.9324721693992615, -0.5666642785072327, 1.0, -0.0, 1.0, 1.0, 1.0, 1.0], 'params': '4ba05cd504df0fe407763a3c03d241a422c66829f8266d99db3b313b5b15cf8d'}, 'sac_fixed': {'stats': [0.9324721693992615, -0.5666642785072327, 1.0, 1.0, 1.0, 1.0], 'params': 'a1c1507a33957cf8410716ba37c346455fd8d32ed5feb4b70451beae3098c620'}, 'sac_enc': {'stats': [0.9017481803894043, -0.6174370646476746, 1.0, -0.0, 1.0, 1.0, 1.0, 1.0], 'params': '1c1357e80ad4e39afbb8ab40a521eded6b45dfeaeda41dcb7e0d25851dbc5444'}, 'td3': {'stats': [1.5184580087661743, 0.0, 1.0, 0.0], 'params': '7d0e3228fe6595f6063794feca9931747ad55fa4c05e8330366df16088b9ad2f'}, 'td3_enc': {'stats': [1.5584466457366943, 0.0515374019742012, 1.0, 1.0], 'params': 'f37b659e3aaa3ba69254128a94d203b5eca04dad55edf0fdd6c0956bf593fed6'}}
PINNED_CASES = {"sac": ("sac", {}), "sac_fixed": ("sac", {"learn_ent_coef": False}),
                "sac_enc": ("sac", {"network.shared_encoder": True}), "td3": ("td3", {}),
                "td3_enc": ("td3", {"network.shared_encoder": True, "policy_delay": 1})}


def fixed_batch(agent) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(123)
    G, B = agent.config.updates_per_call(), agent.config.batch_size
    obs = agent.obs_shape
    return {
        "obs": rng.normal(size=(G, B, *obs)).astype(np.float32),
        "next_obs": rng.normal(size=(G, B, *obs)).astype(np.float32),
        "actions": rng.uniform(-1, 1, size=(G, B, agent.action_dim)).astype(np.float32),
        "rewards": rng.normal(size=(G, B)).astype(np.float32),
        "terminated": (rng.uniform(size=(G, B)) < 0.2).astype(np.float32),
        "discounts": np.full((G, B), 0.99, np.float32),
    }


def with_terms(algo, terms, *, fill=0, logdir=None, **overrides):
    """A tiny agent whose objective gets `terms` through the constructor's `losses` (spec
    strings in `overrides["losses"]` go through the config, as from YAML)."""
    from rl_sever.registry import get_agent_class

    agent = get_agent_class(algo)("Pendulum-v1", tiny_config(algo, **overrides), logdir=logdir,
                                  losses=terms)
    if fill:
        agent.learn(fill, progress=False)
    return agent


def param_hash(agent) -> str:
    h = hashlib.sha256()
    mods = agent.flow_modules()
    for name in sorted(mods):
        for v in mods[name]:
            h.update(np.asarray(v.numpy()).tobytes())
    return h.hexdigest()


def module_params(agent, module: str) -> list[np.ndarray]:
    return [np.array(v.numpy(), copy=True) for v in agent.flow_modules()[module]]


def changed(before, after) -> bool:
    return any(not np.array_equal(a, b) for a, b in zip(before, after))


# -- terms used below (also loaded by dotted path from the CLI test) ---------------------------
@loss_term(trains=lambda a: a.group_modules("critic", {"critic"}))
def huber_critic(batch, out):
    """Huber TD error of every critic member to the severed target."""
    q, y = out["q"], out["target"]
    return tf.add_n([tf.reduce_mean(tf.keras.losses.huber(y[:, None], q[m])) for m in range(q.shape[0])])


@loss_term(trains={"actor"})
def l2_actions(batch, out):
    """L2 penalty on the policy's (unit) actions: trains the actor only."""
    return tf.reduce_mean(tf.square(out["actions"]))


@loss_term(trains={"actor"})
def leaky_actor(batch, out):
    """Declares the actor but reads the critic's weights live: leaks into the critic."""
    agent = out.agent
    q = agent.critic(tf.concat([agent.features(batch["obs"]), out["actions"]], -1))
    return -tf.reduce_mean(q)


# -- default objectives ----------------------------------------------------------------------
@pytest.mark.parametrize("case", sorted(PINNED_CASES))
def test_default_objectives_are_bit_identical(case):
    algo, overrides = PINNED_CASES[case]
    agent = tiny_agent(algo, fill=0, **overrides)
    batch = fixed_batch(agent)
    stats = agent.update({k: batch[k] for k in agent.batch_keys})
    assert [float(x) for x in stats] == PINNED[case]["stats"]
    assert param_hash(agent) == PINNED[case]["params"]


def test_default_terms_and_contracts():
    sac = tiny_agent("sac", fill=0)
    assert sac.objective.names == ["actor", "critic", "alpha"]
    assert set(sac.flow_contract().flows) >= {"actor", "critic", "alpha"}
    assert tiny_agent("sac", fill=0, learn_ent_coef=False).objective.names == ["actor", "critic"]
    assert tiny_agent("td3", fill=0).objective.names == ["actor", "critic"]


# -- editing the objective ---------------------------------------------------------------------
def test_reweighting_from_config_and_python():
    agent = tiny_agent("sac", fill=0, losses=["actor@0.0"])
    assert agent.objective.weights()["actor"] == 0.0
    batch = fixed_batch(agent)
    batch = {k: batch[k] for k in agent.batch_keys}
    actor, critic = module_params(agent, "actor"), module_params(agent, "critic")
    agent.update(batch)
    assert not changed(actor, module_params(agent, "actor"))  # weight 0: no actor step
    assert changed(critic, module_params(agent, "critic"))
    fn = agent._fn("update")
    agent.objective.set_weight("actor", 1.0)  # a variable assignment: no retrace
    agent.update(batch)
    assert agent._fn("update") is fn
    assert changed(actor, module_params(agent, "actor"))


def test_structural_edits_after_construction_are_refused():
    agent = tiny_agent("td3", fill=0)
    with pytest.raises(ConfigError, match="constructor argument or config key"):
        agent.objective.remove("actor")


@pytest.mark.parametrize("algo", ["sac", "td3"])
def test_replacing_the_critic_term(algo):
    default = tiny_agent(algo, fill=0)
    huber = tiny_agent(algo, fill=0, losses=["critic=tests.test_offpolicy_loss_terms:huber_critic"])
    assert huber.objective.names == default.objective.names
    batch = fixed_batch(default)
    batch = {k: batch[k] for k in default.batch_keys}
    d, h = default.train(batch), huber.train(batch)
    assert d["loss/critic"] == d["train/critic_loss"] and h["loss/critic"] == h["train/critic_loss"]
    assert np.isfinite(h["loss/critic"]) and h["loss/critic"] != d["loss/critic"]
    assert h["loss/critic"] < d["loss/critic"]  # Huber <= half the square, per member


def test_an_honest_actor_term_passes_the_audit_and_is_logged(tmp_path):
    agent = with_terms("sac", [l2_actions.copy(weight=0.1)], logdir=str(tmp_path))
    assert agent.objective.names == ["actor", "critic", "alpha", "l2_actions"]
    assert agent.flow_contract().flows["l2_actions"].must == {"actor"}
    agent.learn(96, progress=False)  # crosses learning_starts: audit, then updates
    metrics = agent.train(agent.sample_batch())
    assert np.isfinite(metrics["loss/l2_actions"]) and "train/actor_loss" in metrics
    agent.close()


@pytest.mark.parametrize("algo", ["sac", "td3"])
def test_a_leaking_actor_term_is_stopped_by_the_audit(algo):
    agent = with_terms(algo, [leaky_actor])
    before = param_hash(agent)
    # The loop audits the first update of a run (learning_starts=64), before anything moves.
    with pytest.raises(FlowContractError, match="loss 'leaky_actor' sends gradient into module 'critic'"):
        agent.learn(96, progress=False)
    assert param_hash(agent) == before  # stopped before any update
    agent.close()


@pytest.mark.parametrize("trains, match", [
    ({"actor", "critic"}, "must train exactly one of the modules"),
    ({"encoder"}, "must train exactly one of the modules"),
    ((), "must train exactly one of the modules"),
])
def test_ambiguous_terms_are_rejected(trains, match):
    term = LossTerm("odd", lambda b, o: tf.constant(0.0), trains=trains)
    with pytest.raises(ConfigError, match=match):
        with_terms("sac", [term], **{"network.shared_encoder": True})


def test_group_must_exist_and_own_the_modules():
    alpha = LossTerm("my_alpha", lambda b, o: tf.constant(0.0), trains={"alpha"})
    with pytest.raises(ConfigError, match="'alpha' optimizer of td3 updates nothing"):
        with_terms("td3", [alpha])
    enc = LossTerm("enc_actor", lambda b, o: tf.constant(0.0), trains={"actor", "encoder"})
    with pytest.raises(ConfigError, match="'actor' optimizer of sac updates"):
        with_terms("sac", [enc], **{"network.shared_encoder": True,
                                    "network.encoder_grad_from": "critic"})
    with pytest.raises(ConfigError, match="needs at least one term in the 'critic' group"):
        tiny_agent("sac", fill=0, losses=["-critic"])


def test_bad_terms_fail_at_construction():
    missing = LossTerm("nope", lambda b, o: tf.reduce_mean(o["logits"]), trains={"actor"})
    with pytest.raises(ConfigError, match="'nope'.*forward output 'logits' is not available"):
        with_terms("td3", [missing])
    vector = LossTerm("vec", lambda b, o: o["q"], trains={"critic"})
    with pytest.raises(ConfigError, match="'vec' returned a tensor of shape .* expected a scalar"):
        with_terms("sac", [vector])


def test_cli_loss_on_sac(capsys, tmp_path):
    argv = ["train", "sac", "Pendulum-v1", "--no-preset", "--n-envs", "1", "--steps", "96",
            "--set", "learning_starts=64", "--set", "batch_size=16", "--set", "eval_episodes=0",
            "--set", "network.hidden_sizes=[16]", "--set", "steps_per_iteration=48",
            "--set", "jit_compile=false", "--no-progress", "--logdir", str(tmp_path),
            "--loss", "critic=tests.test_offpolicy_loss_terms:huber_critic",
            "--loss", "+tests.test_offpolicy_loss_terms:l2_actions@0.01", "--loss", "actor@0.5"]
    assert cli.main(argv) == 0, capsys.readouterr().err
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    tags = read_event_tensors(run_dir)
    for tag in ("loss/l2_actions", "loss/critic", "loss/actor", "train/critic_loss",
                "train/actor_loss", "train/ent_coef", "train/ent_coef_loss"):
        assert tag in tags, sorted(tags)
        assert all(np.isfinite(float(v)) for _, v in tags[tag])


# -- metrics returned by custom terms ----------------------------------------------------------
@loss_term(trains={"critic"})
def q_spread(batch, out):
    """A zero-weight critic-group term that reports the spread of the twin Q estimates."""
    q = out["q"]
    return tf.reduce_mean(q) * 0.0, {"spread": tf.reduce_mean(tf.abs(q[0] - q[-1])),
                                     "batch": tf.cast(tf.shape(batch["obs"])[0], tf.float32)}


@loss_term(trains={"actor"})
def action_size(batch, out):
    return tf.reduce_mean(tf.square(out["actions"])), {"max": tf.reduce_max(tf.abs(out["actions"]))}


@pytest.mark.parametrize("algo, overrides", [("sac", {}), ("td3", {"policy_delay": 2})],
                         ids=["sac", "td3-delayed-actor"])
def test_custom_term_metrics_are_logged_per_group(algo, overrides, tmp_path):
    agent = with_terms(algo, [q_spread.copy(weight=0.0), action_size.copy(weight=0.01)],
                       logdir=str(tmp_path), **overrides)
    names = agent.metric_names()
    assert {"loss/q_spread", "loss/q_spread_spread", "loss/q_spread_batch", "loss/action_size",
            "loss/action_size_max"} <= set(names)
    batch = fixed_batch(agent)
    out = agent.train({k: batch[k] for k in agent.batch_keys})
    assert out["loss/q_spread_batch"] == agent.config.batch_size  # the real batch, not the probe's
    assert out["loss/q_spread_spread"] > 0.0  # twin critics start from different weights
    if algo == "td3":  # n_updates 1 is not a multiple of policy_delay 2: no actor step yet
        assert "loss/action_size" not in out and "loss/action_size_max" not in out
        out = agent.train({k: batch[k] for k in agent.batch_keys})
    assert 0.0 < out["loss/action_size_max"] <= 1.0  # unit actions (tanh-squashed)
    assert out["loss/action_size"] <= out["loss/action_size_max"] ** 2
    agent.learn(96, progress=False)  # through the loop: the metrics reach TensorBoard
    agent.close()
    tags = read_event_tensors(agent.run_dir)
    assert {"loss/q_spread_spread", "loss/action_size_max"} <= set(tags)
