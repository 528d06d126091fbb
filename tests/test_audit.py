"""Gradient-flow audit: matrix statuses (none / zero / norm), contracts, reports, run_audit."""

from __future__ import annotations

import json
import math
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from rl_sever.audit import (
    Flow,
    FlowContract,
    audit_flow,
    format_verdict,
    run_audit,
)
from rl_sever.errors import FlowContractError
from rl_sever.isolation import sever, sever_if

OBS, HID, ACT, N = 4, 8, 3, 6


class Nets:
    """Shared encoder -> actor head / critic head, plus a target copy of the critic."""

    def __init__(self) -> None:
        self.encoder = keras.Sequential(
            [keras.Input((OBS,)), keras.layers.Dense(HID, activation="tanh", name="enc_dense")],
            name="encoder",
        )
        self.actor = keras.Sequential(
            [keras.Input((HID,)), keras.layers.Dense(ACT, name="actor_logits")], name="actor"
        )
        self.critic = keras.Sequential(
            [keras.Input((HID,)), keras.layers.Dense(1, name="critic_value")], name="critic"
        )
        self.target = keras.Sequential(
            [keras.Input((HID,)), keras.layers.Dense(1, name="target_value")], name="target"
        )
        self.target.set_weights(self.critic.get_weights())
        self.target.trainable = False
        rng = np.random.default_rng(0)
        self.obs = tf.constant(rng.normal(size=(N, OBS)), tf.float32)
        self.next_obs = tf.constant(rng.normal(size=(N, OBS)), tf.float32)
        self.actions = tf.constant(rng.integers(0, ACT, size=N), tf.int32)
        self.returns = tf.constant(rng.normal(size=N) + 1.0, tf.float32)
        # Compiled on purpose: the audit must see through tf.function calls inside a loss.
        self.logp = tf.function(self._logp)

    def _logp(self, obs, actions):
        logits = self.actor(self.encoder(obs))
        return tf.gather(tf.nn.log_softmax(logits), actions, batch_dims=1)

    def modules(self) -> dict[str, list]:
        return {
            "actor": self.actor.variables,
            "critic": self.critic.variables,
            "encoder": self.encoder.variables,
            "targets": self.target.variables,
        }

    def value(self, obs):
        return tf.squeeze(self.critic(self.encoder(obs)), -1)

    def policy_loss(self, baseline=sever):
        def loss():
            adv = self.returns - baseline(self.value(self.obs))
            return -tf.reduce_mean(self.logp(self.obs, self.actions) * adv)

        return loss

    def value_loss(self):
        return tf.reduce_mean(tf.square(self.returns - self.value(self.obs)))

    def td_loss(self, severed=True):
        target = tf.squeeze(self.target(self.encoder(self.next_obs)), -1)
        if severed:
            target = sever(target)
        return tf.reduce_mean(tf.square(self.returns + 0.9 * target - self.value(self.obs)))


CONTRACT = FlowContract(
    {
        "policy": Flow(must={"actor"}, may={"actor", "encoder"}),
        "value": Flow(must={"critic"}, may={"critic", "encoder"}),
    }
)


@pytest.fixture
def nets() -> Nets:
    return Nets()


@pytest.mark.parametrize(
    "baseline, critic_status",
    [(sever, "none"), (lambda v: sever_if(tf.constant(True), v), "zero")],
    ids=["sever", "sever_if"],
)
def test_severed_baseline_keeps_critic_out_of_policy_loss(nets, baseline, critic_status):
    m = audit_flow({"policy": nets.policy_loss(baseline), "value": nets.value_loss}, nets.modules())
    assert m.status("policy", "critic") == critic_status
    assert m.status("policy", "actor") == "flow" and m.norm("policy", "actor") > 0
    assert m.norm("policy", "encoder") > 0
    assert m.status("policy", "targets") == "none" and m.norm("policy", "targets") is None
    assert m.status("value", "actor") == "none"
    assert m.norm("value", "critic") > 0
    cell = m.cell("policy", "actor")
    assert set(cell.variables) == {"actor/actor_logits/kernel", "actor/actor_logits/bias"}
    assert math.isclose(
        cell.norm, math.hypot(*(v.norm for v in cell.variables.values())), rel_tol=1e-9
    )
    assert CONTRACT.check(m) == []
    CONTRACT.enforce(m)


def test_norm_matches_plain_tape_eager_and_compiled(nets):
    # The whole loss may also be a tf.function; the audit must give the same answer.
    m = audit_flow(
        {"value": nets.value_loss, "compiled": tf.function(nets.value_loss)}, nets.modules()
    )
    with tf.GradientTape() as tape:
        loss = nets.value_loss()
    grads = tape.gradient(loss, nets.critic.trainable_variables)
    expected = float(tf.linalg.global_norm(grads))
    assert math.isclose(m.norm("value", "critic"), expected, rel_tol=1e-5)
    assert math.isclose(m.norm("compiled", "critic"), expected, rel_tol=1e-5)
    assert m.status("compiled", "actor") == "none"


def test_leaking_baseline_is_named_with_its_variables(nets):
    leaky = nets.policy_loss(baseline=lambda v: v)  # baseline NOT severed
    m = audit_flow({"policy": leaky, "value": nets.value_loss}, nets.modules())
    assert m.status("policy", "critic") == "flow"
    (v,) = CONTRACT.check(m)
    assert (v.loss, v.module, v.kind) == ("policy", "critic", "leak")
    assert {name for name, _ in v.variables} == {
        "critic/critic_value/kernel",
        "critic/critic_value/bias",
    }
    assert all(norm > 0 for _, norm in v.variables)
    with pytest.raises(FlowContractError) as info:
        CONTRACT.enforce(m)
    msg = str(info.value)
    for part in (
        "'policy'",
        "'critic'",
        "leak",
        "critic/critic_value/kernel",
        "critic/critic_value/bias",
    ):
        assert part in msg
    assert "!" in msg  # the embedded matrix marks the offending cell


def test_unsevered_target_network_leaks_into_targets(nets):
    contract = FlowContract({"td": Flow(must={"critic"}, may={"critic", "encoder"})})
    ok = audit_flow({"td": nets.td_loss}, nets.modules())
    assert ok.status("td", "targets") == "none"
    assert contract.check(ok) == []
    bad = audit_flow({"td": lambda: nets.td_loss(severed=False)}, nets.modules())
    (v,) = contract.check(bad)
    assert (v.kind, v.module) == ("leak", "targets")
    assert {n for n, _ in v.variables} == {"target/target_value/kernel", "target/target_value/bias"}


def test_missing_required_module(nets):
    def value_on_severed_features():
        # The encoder output is severed, so the value loss cannot train the encoder.
        v = tf.squeeze(nets.critic(sever(nets.encoder(nets.obs))), -1)
        return tf.reduce_mean(tf.square(nets.returns - v))

    contract = FlowContract({"value": Flow(must={"critic", "encoder"})})
    m = audit_flow({"value": value_on_severed_features}, nets.modules())
    (v,) = contract.check(m)
    assert (v.loss, v.module, v.kind, v.status) == ("value", "encoder", "missing", "none")
    with pytest.raises(FlowContractError, match=r"(?s)missing.*'value'.*'encoder'.*None"):
        contract.enforce(m)


def test_zero_versus_none(nets):
    loss = nets.policy_loss()
    m = audit_flow({"scaled": lambda: 0.0 * loss()}, nets.modules())
    assert m.status("scaled", "actor") == "zero" and m.norm("scaled", "actor") == 0.0
    assert m.status("scaled", "encoder") == "zero"
    assert m.status("scaled", "targets") == "none"  # never touched
    # A required module that gets exactly zero is as missing as a disconnected one.
    (v,) = FlowContract({"scaled": Flow(must={"actor"}, may={"actor", "encoder"})}).check(m)
    assert (v.kind, v.module, v.status) == ("missing", "actor", "zero")
    # Exactly-zero gradient into a forbidden module is not a leak.
    assert FlowContract({"scaled": Flow()}).check(m) == []


def test_indexed_slices_gradients():
    emb = keras.layers.Embedding(10, 3, name="emb")
    emb.build((None,))
    table = emb.embeddings
    with tf.GradientTape() as tape:
        raw = tf.reduce_sum(tf.gather(table, [1, 1, 3]))
    assert isinstance(tape.gradient(raw, table), tf.IndexedSlices)  # the path under test

    def total():
        return tf.reduce_sum(tf.gather(table, [1, 1, 3]))

    def cancelling():  # duplicate index: +1 and -1 land on the same row
        rows = tf.gather(table, [2, 2])
        return tf.reduce_sum(rows[0] - rows[1])

    m = audit_flow({"total": total, "cancel": cancelling}, {"embed": [table]})
    # Dense gradient: row 1 = 2, row 3 = 1 in each of 3 columns.
    assert math.isclose(m.norm("total", "embed"), math.sqrt(3 * (4 + 1)), rel_tol=1e-6)
    assert m.status("cancel", "embed") == "zero"


@pytest.mark.parametrize(
    "value, match",
    [
        (lambda v: v * tf.ones(3), r"'bad'.*scalar.*\[3\]"),
        (lambda v: v * float("nan"), r"'bad'.*not finite"),
        (lambda v: v + float("inf"), r"'bad'.*not finite"),
        (lambda v: None, r"'bad'.*None"),
    ],
    ids=["vector", "nan", "inf", "none"],
)
def test_bad_loss_values_are_rejected_by_name(value, match):
    var = tf.Variable(1.0, name="w")
    with pytest.raises(ValueError, match=match):
        audit_flow({"good": lambda: var * 2.0, "bad": lambda: value(var)}, {"m": [var]})


def test_exception_in_loss_names_the_loss():
    def boom():
        raise RuntimeError("kaput")

    with pytest.raises(RuntimeError, match="kaput") as info:
        audit_flow({"boom": boom}, {"m": [tf.Variable(1.0)]})
    assert any("'boom'" in note for note in info.value.__notes__)


def test_variable_in_two_modules_is_rejected(nets):
    modules = nets.modules()
    modules["actor"] = nets.actor.variables + nets.encoder.variables
    with pytest.raises(
        ValueError, match=r"encoder/enc_dense/kernel.*two modules.*'actor'.*'encoder'"
    ):
        audit_flow({"policy": nets.policy_loss()}, modules)
    var = tf.Variable(1.0)
    with pytest.raises(ValueError, match="twice"):
        audit_flow({"l": lambda: var * 1.0}, {"m": [var, var]})
    with pytest.raises(TypeError, match="model.variables"):
        audit_flow({"l": lambda: var * 1.0}, {"m": nets.actor})


def test_table_markdown_and_dict(nets):
    leaky = nets.policy_loss(baseline=lambda v: v)
    m = audit_flow({"policy": leaky, "value": nets.value_loss}, nets.modules())
    table = m.to_table()
    lines = table.splitlines()
    for name in (*m.losses, *m.modules):
        assert name in table
    assert "—" in table and ("e-0" in table or "e+0" in table)
    # Columns are aligned: every module column starts at the same offset in every row.
    header, rows = lines[0], [ln for ln in lines[2:] if ln.split()[0] in m.losses]
    assert len(rows) == 2
    for module in m.modules:
        col = header.index(module)
        assert all(row[col - 1] == " " and row[col] != " " for row in rows)
    marked = m.to_table(CONTRACT.check(m))
    assert "!" in marked and "!" not in table.split("\n")[2]

    md = m.to_markdown()
    assert md.startswith("| loss")
    assert "| policy |" in md and "| value |" in md and "critic" in md

    d = json.loads(json.dumps(m.to_dict(), allow_nan=False))
    assert d["losses"] == ["policy", "value"]
    assert d["cells"]["policy"]["critic"]["status"] == "flow"
    assert d["cells"]["value"]["actor"] == {
        "status": "none",
        "norm": None,
        "variables": {
            "actor/actor_logits/kernel": {"status": "none", "norm": None},
            "actor/actor_logits/bias": {"status": "none", "norm": None},
        },
    }


def test_contract_composition_and_defaults(nets):
    m = audit_flow(
        {"policy": nets.policy_loss(), "value": nets.value_loss, "aux": nets.value_loss},
        nets.modules(),
    )
    (v,) = CONTRACT.check(m)
    assert (v.kind, v.loss, v.module) == ("undeclared", "aux", None)
    assert "critic" in str(v)  # tells where the undeclared loss reaches
    assert CONTRACT.with_loss("aux", Flow(must="critic", may={"critic", "encoder"})).check(m) == []
    assert CONTRACT.with_default(Flow(may={"critic", "encoder"})).check(m) == []
    with pytest.raises(ValueError, match="replace=True"):
        CONTRACT.with_loss("value", Flow())
    # A declared requirement on a loss the agent did not provide is unverified -> missing.
    fewer = audit_flow({"policy": nets.policy_loss()}, nets.modules())
    (v,) = CONTRACT.check(fewer)
    assert (v.kind, v.loss, v.module) == ("missing", "value", "critic")
    assert CONTRACT.without_loss("value").check(fewer) == []
    assert "value" in CONTRACT.flows  # contracts are immutable
    # A required module that the audit does not know (typo) is reported, with a suggestion.
    (v,) = FlowContract({"policy": Flow(must={"actr"}, may={"actr", "actor", "encoder"})}).check(
        fewer
    )
    assert v.kind == "missing" and "Did you mean: actor" in str(v)
    with pytest.raises(ValueError, match="must ⊆ may"):
        Flow(must={"actor"}, may={"encoder"})
    assert Flow(must="actor") == Flow(must={"actor"}, may={"actor"})


def test_format_verdict(nets):
    assert format_verdict([]).startswith("verdict: OK")
    m = audit_flow({"policy": nets.policy_loss(lambda v: v)}, nets.modules())
    verdict = format_verdict(CONTRACT.check(m))
    assert verdict.startswith("verdict: FAIL") and "leak policy→critic" in verdict
    assert "\n" not in verdict


class FakeAgent:
    def __init__(self, nets: Nets, leak: bool = False) -> None:
        self.nets, self.leak = nets, leak

    def flow_modules(self):
        return self.nets.modules()

    def flow_losses(self, batch):
        baseline = (lambda v: v) if self.leak else sever
        return {"policy": self.nets.policy_loss(baseline), "value": self.nets.value_loss}

    def flow_contract(self):
        return CONTRACT


def _text_summaries(logdir: Path) -> list[tuple[int, str, str]]:
    out = []
    for path in logdir.glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                text = tf.make_ndarray(value.tensor).item().decode()
                out.append((event.step, value.tag, text))
    return out


def test_run_audit_with_fake_agent(nets, tmp_path):
    matrix, violations = run_audit(FakeAgent(nets), batch=None)
    assert violations == [] and matrix.status("policy", "critic") == "none"

    writer = tf.summary.create_file_writer(str(tmp_path))
    matrix, violations = run_audit(
        FakeAgent(nets, leak=True), batch=None, writer=writer, step=3, enforce=False
    )
    assert [(v.loss, v.module, v.kind) for v in violations] == [("policy", "critic", "leak")]
    with pytest.raises(FlowContractError, match="critic/critic_value/kernel"):
        run_audit(FakeAgent(nets, leak=True), batch=None, writer=writer, step=4)
    writer.close()
    summaries = _text_summaries(tmp_path)
    # The failing audit is still written before raising.
    assert [(s, tag) for s, tag, _ in summaries] == [
        (3, "audit/gradient_flow"),
        (4, "audit/gradient_flow"),
    ]
    assert "verdict: FAIL" in summaries[0][2] and "critic/critic_value/kernel" in summaries[0][2]

    with pytest.raises(TypeError, match="flow_contract"):
        run_audit(object(), batch=None)


def test_write_summary_event_file(nets, tmp_path):
    m = audit_flow({"policy": nets.policy_loss(), "value": nets.value_loss}, nets.modules())
    m.write_summary(None, step=0)  # no writer: no-op
    writer = tf.summary.create_file_writer(str(tmp_path))
    m.write_summary(writer, step=7)
    writer.close()
    ((step, tag, text),) = _text_summaries(tmp_path)
    assert (step, tag) == (7, "audit/gradient_flow")
    assert text == m.to_markdown()
