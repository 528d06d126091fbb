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
from rl_sever.objective import LossTerm, loss_term
from rl_sever.offpolicy.replay import Transitions
from tests.helpers import read_event_tensors, tiny_agent, tiny_config
from tests.test_custom_losses import PINNED_WEIGHTS

# Captured from the code before SAC/TD3 had loss terms: one compiled update on fixed_batch
# (tests.helpers tiny configs, seed 0, fill=0): the raw metric vector, and per module
# (flow_modules) [sum |params| after, sum |params after - before|, sum (after - before) * w] with
# w a fixed standard-normal vector. The parameters were first pinned as a sha256, which holds
# on one CPU only: oneDNN picks kernels by instruction set (AVX2 vs AVX-512/AMX) and the last
# bits move (~2e-7). The per-module update summaries keep what the hash proved (same losses,
# same update of every module, nothing moved that must not) within a float tolerance.
PINNED_METRICS = {"sac": {"train/critic_loss": 0.9324721693992615, "train/actor_loss": -0.5666642785072327, "train/ent_coef": 1.0, "train/ent_coef_loss": -0.0}, "sac_enc": {"train/critic_loss": 0.9017481803894043, "train/actor_loss": -0.6174370646476746, "train/ent_coef": 1.0, "train/ent_coef_loss": -0.0}, "sac_fixed": {"train/critic_loss": 0.9324721693992615, "train/actor_loss": -0.5666642785072327, "train/ent_coef": 1.0}, "td3": {"train/critic_loss": 1.5184580087661743}, "td3_enc": {"train/critic_loss": 1.5584466457366943, "train/actor_loss": 0.0515374019742012}}
PINNED_UPDATES = {"sac": {"actor": [58.62193042910076, 0.09982562850200338, -0.005125215639441447], "alpha": [0.00029999794787727296, 0.00029999794787727296, -3.771880831417381e-05], "critic": [110.98172644592705, 0.18561850377591327, -0.004510653220999718], "targets": [110.97845484761638, 0.000928006658796221, -2.256582332235971e-05]}, "sac_enc": {"actor": [72.02850374850095, 0.14206548610673053, -0.006119914372621186], "alpha": [0.00029999794787727296, 0.00029999794787727296, -3.771880831417381e-05], "critic": [142.19753440565546, 0.25850508868461475, 0.00536646475708258], "encoder": [13.184600261447486, 0.019191750732716173, -0.0012447059720277908], "targets": [155.37736730324866, 0.0013886226591921513, 4.50528372698795e-05]}, "sac_fixed": {"actor": [58.62193042910076, 0.09982562850200338, -0.005125215639441447], "critic": [110.98172644592705, 0.18561850377591327, -0.004510653220999718], "targets": [110.97845484761638, 0.000928006658796221, -2.256582332235971e-05]}, "td3": {"actor": [56.30674130508123, 0.0, 0.0], "critic": [110.95431711827405, 0.6188588075165171, -0.026839652081696003], "targets": [167.28517905390618, 0.0, 0.0]}, "td3_enc": {"actor": [69.68955385428853, 0.43742681513685966, 0.0164054605114166], "critic": [142.22661068831803, 0.8620971044583712, -0.02069509926121762], "encoder": [13.188399974606, 0.06397653964813799, -0.006057504655268652], "targets": [225.0786412570469, 0.0068180059770384105, 6.77714346083751e-05]}}
PINNED_CASES = {"sac": ("sac", {}), "sac_fixed": ("sac", {"learn_ent_coef": False}),
                "sac_enc": ("sac", {"network.shared_encoder": True}), "td3": ("td3", {}),
                "td3_enc": ("td3", {"network.shared_encoder": True, "policy_delay": 1})}


def fixed_batch(agent) -> Transitions:
    rng = np.random.default_rng(123)
    G, B = agent.config.updates_per_call(), agent.config.batch_size
    obs = agent.obs_shape
    return Transitions.of({
        "obs": rng.normal(size=(G, B, *obs)).astype(np.float32),
        "next_obs": rng.normal(size=(G, B, *obs)).astype(np.float32),
        "actions": rng.uniform(-1, 1, size=(G, B, agent.action_dim)).astype(np.float32),
        "rewards": rng.normal(size=(G, B)).astype(np.float32),
        "terminated": (rng.uniform(size=(G, B)) < 0.2).astype(np.float32),
        "discounts": np.full((G, B), 0.99, np.float32),
    })


def with_terms(algo, terms, *, fill=0, logdir=None, **overrides):
    """A tiny agent whose objective gets `terms` through the constructor's `losses` (spec
    strings in `overrides["losses"]` go through the config, as from YAML)."""
    from rl_sever.core.registry import get_agent_class

    agent = get_agent_class(algo)("Pendulum-v1", tiny_config(algo, **overrides), logdir=logdir,
                                  losses=terms)
    if fill:
        agent.learn(fill, progress=False)
    return agent


def module_vectors(agent) -> dict[str, np.ndarray]:
    """Every flow module's parameters as one float64 vector."""
    return {m: np.concatenate([np.asarray(v.numpy(), np.float64).ravel() for v in vs] or [[]])
            for m, vs in agent.flow_modules().items()}


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
# The pins were captured without XLA (tiny configs) with Keras's Adam. Updates without XLA now
# use fused Adam kernels (tf.raw_ops.ResourceApplyAdam), whose first step is the exact
# lr * g / (|g| + eps'): Keras's differs from it by ~7e-6 relative (float32 bias correction),
# which only SAC's scalar log_alpha shows at the pins' 1e-6 (its update is one lr-sized step).
# bfloat16 hidden matmuls compute the same update to bfloat16 precision.
PATHS = {"float32": ({"network.matmul_precision": "float32"}, 1e-5, 1),
         "bf16": ({"network.matmul_precision": "bfloat16"}, 1e-5, 300)}


@pytest.mark.parametrize("path", sorted(PATHS))
@pytest.mark.parametrize("case", sorted(PINNED_CASES))
def test_default_objectives_match_the_pinned_update(case, path):
    algo, overrides = PINNED_CASES[case]
    settings, alpha_rel, loose = PATHS[path]
    agent = tiny_agent(algo, fill=0, **overrides, **settings)
    assert not agent.jit_compile
    assert agent.matmul_precision == settings["network.matmul_precision"]
    if agent.encoder is not None:  # the encoder the pins started from (before DenseStack)
        with np.load(PINNED_WEIGHTS) as saved:
            for net in (agent.encoder, agent.target_encoder):
                for i, v in enumerate(net.weights):
                    v.assign(saved[f"{case}/encoder{i}"])
    batch = fixed_batch(agent)
    before = module_vectors(agent)
    logged = agent.train(batch)
    after = module_vectors(agent)
    sb3_names = {k: v for k, v in logged.items() if k.startswith("train/") and k != "train/n_updates"}
    assert sorted(sb3_names) == sorted(PINNED_METRICS[case])
    for name, value in PINNED_METRICS[case].items():
        assert sb3_names[name] == pytest.approx(value, rel=1e-5 * loose, abs=1e-7), name
    assert sorted(after) == sorted(PINNED_UPDATES[case])
    for module, (abs_sum, step_abs_sum, step_dot) in PINNED_UPDATES[case].items():
        step = after[module] - before[module]
        w = np.random.default_rng(0).normal(size=step.shape)
        rel = alpha_rel if module == "alpha" else 1e-6 * loose
        assert np.abs(after[module]).sum() == pytest.approx(abs_sum, rel=rel), module
        if step_abs_sum == 0.0:  # e.g. TD3's delayed actor and targets: exactly unmoved
            assert not step.any(), module
            continue
        assert np.abs(step).sum() == pytest.approx(step_abs_sum, rel=1e-4 * loose), module
        # A sum that nearly cancels: under bfloat16 compared to the step's size instead.
        dot_abs = 1e-6 if loose == 1 else 1e-2 * step_abs_sum
        assert (step * w).sum() == pytest.approx(step_dot, rel=1e-3, abs=dot_abs), module


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
    with pytest.raises(ConfigError, match="constructor argument or config key"):
        agent.objective = agent.objective  # replacing the whole objective is an edit too


def test_a_weight_schedule_set_from_python_starts_and_stops():
    agent = tiny_agent("sac", fill=0)
    agent.objective.set_weight("actor", 1.0, schedule="linear")
    assert "w_actor" in agent.schedules
    agent.objective.set_weight("actor", 0.5, schedule="constant")
    assert "w_actor" not in agent.schedules  # no stale schedule overwrites the new weight
    assert agent.loss_weights["actor"] is agent.objective["actor"].weight
    assert float(agent.loss_weights["actor"].numpy()) == 0.5


@pytest.mark.parametrize("algo", ["sac", "td3"])
def test_replacing_the_critic_term(algo):
    default = tiny_agent(algo, fill=0)
    huber = tiny_agent(algo, fill=0, losses=["critic=tests.test_offpolicy_loss_terms:huber_critic"])
    assert huber.objective.names == default.objective.names
    batch = fixed_batch(default)
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
    ((), "must train exactly one of the modules"),
])
def test_ambiguous_terms_are_rejected(trains, match):
    term = LossTerm("odd", lambda b, o: tf.constant(0.0), trains=trains)
    with pytest.raises(ConfigError, match=match):
        with_terms("sac", [term], **{"network.shared_encoder": True})


def test_encoder_only_terms_join_the_critic_side_when_its_optimizer_has_the_encoder():
    """A term training only critic-side modules (as the auxiliary losses do) joins the critic
    group; where the critic optimizer does not update the encoder, it is rejected by name."""

    @loss_term(trains={"encoder"})
    def feature_l2(batch, out):
        return 1e-3 * tf.reduce_mean(tf.square(out["features"]))

    agent = with_terms("sac", [feature_l2], **{"network.shared_encoder": True})
    assert [t.name for t in agent.terms_of("critic")] == ["critic", "feature_l2"]
    agent.close()
    with pytest.raises(ConfigError, match="'critic' optimizer of sac updates"):
        with_terms("sac", [feature_l2], **{"network.shared_encoder": True,
                                           "network.encoder_grad_from": "actor"})


def test_terms_that_own_networks_train_them_with_their_group():
    """An off-policy term may build its own head (as on-policy terms may): it joins the group
    it trains, that group's optimizer updates it, the audit shows it, checkpoints hold it."""
    import keras

    class QHead(LossTerm):
        def build(self, agent):
            self.head = keras.layers.Dense(1, name="q_head")
            self.head.build((None, agent.encoder.out_dim))
            return {"q_head": self.head.trainable_variables}

        def compute(self, batch, out):
            pred = self.head(out["features"])[:, 0]
            return tf.reduce_mean(tf.square(pred - tf.stop_gradient(out["target"])))

    term = QHead("q_aux", 0.5, trains={"q_head", "encoder"})
    agent = with_terms("sac", [term], fill=80, **{"network.shared_encoder": True})
    assert "q_head" in agent.flow_modules() and "q_head" in agent.optimizers["critic"].module_names
    assert agent.flow_contract().flows["q_aux"].must == frozenset({"q_head", "encoder"})
    before = module_params(agent, "q_head")
    agent.learn(64, progress=False)
    assert changed(before, module_params(agent, "q_head"))
    assert "loss_terms" in agent.trackables() and "q_aux" in agent.trackables()["loss_terms"]
    agent.close()


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
    assert {"q_spread", "q_spread_spread", "q_spread_batch", "action_size",
            "action_size_max"} <= set(agent.all_metric_keys())
    batch = fixed_batch(agent)
    out = agent.train(batch)
    assert out["loss/q_spread_batch"] == agent.config.batch_size  # the real batch, not the probe's
    assert out["loss/q_spread_spread"] > 0.0  # twin critics start from different weights
    if algo == "td3":  # n_updates 1 is not a multiple of policy_delay 2: no actor step yet
        assert "loss/action_size" not in out and "loss/action_size_max" not in out
        out = agent.train(batch)
    assert 0.0 < out["loss/action_size_max"] <= 1.0  # unit actions (tanh-squashed)
    assert out["loss/action_size"] <= out["loss/action_size_max"] ** 2
    agent.learn(96, progress=False)  # through the loop: the metrics reach TensorBoard
    agent.close()
    tags = read_event_tensors(agent.run_dir)
    assert {"loss/q_spread_spread", "loss/action_size_max"} <= set(tags)
