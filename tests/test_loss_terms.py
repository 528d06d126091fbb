"""rl_sever.objective: composition arithmetic, spec strings, dotted paths and bad return
values, without training."""

from __future__ import annotations

import pytest
import tensorflow as tf

from rl_sever.errors import ConfigError
from rl_sever.objective import (
    LossTerm,
    Objective,
    entropy_bonus,
    load_term,
    loss_term,
    parse_spec,
    ppo_clip,
    value_mse,
)
from rl_sever.objective.evaluate import evaluate_term


@loss_term(trains={"actor"})
def my_term(batch, out):
    return tf.reduce_mean(batch["x"])


def test_composition_builds_an_ordered_weighted_objective():
    obj = ppo_clip(0.2) + 0.5 * value_mse() + 0.01 * entropy_bonus() + 0.1 * my_term
    assert isinstance(obj, Objective)
    assert obj.names == ["policy", "value", "entropy", "my_term"]
    assert obj.weights() == pytest.approx({"policy": 1.0, "value": 0.5, "entropy": 0.01, "my_term": 0.1})
    # Scaling copies: the module-level term keeps its own weight variable and value.
    assert my_term.initial_weight == 1.0 and not my_term.weight_given
    assert obj["my_term"].weight is not my_term.weight
    assert (2 * obj).weights()["value"] == pytest.approx(1.0)
    assert (0.5 * my_term * 4).initial_weight == pytest.approx(2.0)
    assert sum([my_term, 0.5 * value_mse()]).names == ["my_term", "value"]
    with pytest.raises(ConfigError, match="already has a term 'value'"):
        value_mse() + value_mse()


def test_edits_in_place_and_unknown_names_suggest():
    obj = ppo_clip(0.2) + 0.5 * value_mse() + 0.0 * entropy_bonus()
    new = obj.replace("value", my_term)  # no weight given: keeps the replaced term's
    assert new.name == "value" and obj.names == ["policy", "value", "entropy"]
    assert obj.weights()["value"] == pytest.approx(0.5)
    obj.replace("value", my_term, weight=2.0)
    assert obj.weights()["value"] == pytest.approx(2.0)
    obj.remove("entropy")
    obj.add(my_term, weight=0.3)
    assert obj.names == ["policy", "value", "my_term"]
    obj.set_weight("my_term", 0.7, schedule="linear")
    assert obj["my_term"].schedule == "linear" and float(obj["my_term"].weight.numpy()) == pytest.approx(0.7)
    with pytest.raises(ConfigError, match=r"no loss term 'my_trem' .*terms: policy, value, my_term\)\. Did you mean: my_term"):
        obj.remove("my_trem")
    with pytest.raises(ConfigError, match="no loss term 'valu'.*Did you mean: value"):
        obj.apply("valu=examples.custom_losses:huber_value")


@pytest.mark.parametrize("spec, expected", [
    ("-entropy", ("remove", "entropy", None, None, None)),
    ("+my_pkg.losses:l2_actions@0.01", ("add", None, "my_pkg.losses:l2_actions", 0.01, None)),
    ("value=my_pkg.my_losses:huber_value", ("replace", "value", "my_pkg.my_losses:huber_value", None, None)),
    ("value = a.b:c@0.5:linear", ("replace", "value", "a.b:c", 0.5, "linear")),
    ("entropy@0.01", ("weight", "entropy", None, 0.01, None)),
])
def test_spec_strings_parse(spec, expected):
    s = parse_spec(spec)
    assert (s.op, s.name, s.path, s.weight, s.schedule) == expected


@pytest.mark.parametrize("spec, message", [
    ("value", "expected -NAME"),
    ("+nocolon", "dotted path"),
    ("+a.b:c@x", "not a number"),
    ("entropy@0.1:cosine", "unknown schedule"),
    ("-", "not a term name"),
])
def test_bad_specs_are_config_errors(spec, message):
    with pytest.raises(ConfigError, match=message):
        parse_spec(spec)


def test_dotted_paths_load_fresh_terms_or_fail_clearly():
    a, b = load_term("examples.custom_losses:huber_value"), load_term("examples.custom_losses:huber_value")
    assert isinstance(a, LossTerm) and a is not b and a.weight is not b.weight
    with pytest.raises(ConfigError, match="cannot import module 'examples.no_such_module'"):
        load_term("examples.no_such_module:x")
    with pytest.raises(ConfigError, match="has no attribute 'huber_valu'.*Did you mean: huber_value"):
        load_term("examples.custom_losses:huber_valu")
    with pytest.raises(ConfigError, match="plain function.*@rl_sever.objective.loss_term"):
        load_term("tests.test_loss_terms:plain_function")
    with pytest.raises(ConfigError, match="not a LossTerm"):
        load_term("tests.test_loss_terms:NOT_A_TERM")


def plain_function(batch, out):
    return tf.constant(0.0)


NOT_A_TERM = 3


@pytest.mark.parametrize("returned, message", [
    (lambda: tf.ones([3]), r"shape \(3,\).*expected a scalar"),
    (lambda: None, "returned NoneType"),
    (lambda: "oops", "returned str"),
    (lambda: (tf.constant(1.0), tf.constant(2.0)), "scalar or \\(scalar, dict"),
    (lambda: (tf.constant(1.0), {"m": tf.ones([2])}), "metric 'm'"),
    (lambda: tf.constant(True), "bool tensor"),
])
def test_bad_return_values_name_the_term(returned, message):
    term = LossTerm("bad_term", lambda b, o: returned(), trains={"actor"})
    with pytest.raises(ConfigError, match=f"loss term 'bad_term'.*{message}"):
        evaluate_term(term, {}, {})


def test_metrics_are_namespaced_by_term():
    term = LossTerm("aux", lambda b, o: (tf.constant(1.0), {"acc": tf.constant(0.5)}), trains=())
    value, metrics = evaluate_term(term, {}, {})
    assert float(value) == 1.0 and set(metrics) == {"aux_acc"}
    renamed = term.copy(name="other")  # a replacement keeps its metric keys
    assert set(evaluate_term(renamed, {}, {})[1]) == {"aux_acc"}
