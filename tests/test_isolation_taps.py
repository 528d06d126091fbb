"""Taps: outputs plus named activations from one forward pass, usable in compiled steps."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from rl_sever.errors import ConfigError, UnknownNameError
from rl_sever.isolation import Taps, sever_edge, tap_statistics, write_tap_summaries

X = tf.constant(np.random.default_rng(2).normal(size=(6, 3)), tf.float32)


def _model():
    inp = keras.Input((3,), name="obs")
    h1 = keras.layers.Dense(8, activation="relu", name="h1")(inp)
    h2 = keras.layers.Dense(8, activation="relu", name="h2")(h1)
    out = keras.layers.Dense(2, name="head")(keras.layers.Add(name="add")([h1, h2]))
    return keras.Model(inp, out)


def test_outputs_and_activations_match_the_model():
    model = _model()
    taps = Taps(model, ["h1", "h2"])
    out, acts = taps(X)
    np.testing.assert_array_equal(out, model(X))
    np.testing.assert_array_equal(acts["h1"], model.get_layer("h1")(X))
    np.testing.assert_array_equal(acts["h2"], model.get_layer("h2")(acts["h1"]))
    assert set(acts) == {"h1", "h2"}


def test_compiled_step_with_auxiliary_loss_on_a_tap():
    model = _model()
    taps = Taps(model, ["h1"])
    head, h1 = model.get_layer("head"), model.get_layer("h1")
    opt = keras.optimizers.SGD(0.1)

    @tf.function
    def step(x):
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            # Keras 3 variables cannot be watched directly; watch their tf.Variable.
            tape.watch([v.value for v in model.trainable_variables])
            _, acts = taps(x, training=True)
            aux = tf.reduce_mean(acts["h1"] ** 2)
        grads = tape.gradient(aux, model.trainable_variables)
        opt.apply_gradients(
            [(g, v) for g, v in zip(grads, model.trainable_variables) if g is not None]
        )
        return aux, dict(zip([v.path for v in model.trainable_variables], grads))

    eager_aux = tf.reduce_mean(taps(X)[1]["h1"] ** 2)
    aux, grads = step(X)
    np.testing.assert_allclose(aux, eager_aux, rtol=1e-6)
    assert all(grads[v.path] is not None for v in h1.trainable_variables)
    assert all(grads[v.path] is None for v in head.trainable_variables)  # downstream untouched
    step(X)
    assert step.experimental_get_tracing_count() == 1


def test_taps_on_a_model_whose_layers_are_shared_with_another_graph():
    model = _model()
    cut = sever_edge(model, "h1", "add")  # h1 is now called in two graphs
    out, acts = Taps(cut, ["h1"])(X)
    np.testing.assert_array_equal(out, cut(X))
    np.testing.assert_array_equal(acts["h1"], model.get_layer("h1")(X))


def test_taps_follow_restored_weights(tmp_path):
    model = _model()
    taps = Taps(model, ["h2"])
    before = taps(X)[1]["h2"].numpy()
    path = tf.train.Checkpoint(model=model).save(str(tmp_path / "ck"))
    for v in model.trainable_variables:
        v.assign(tf.zeros_like(v))
    tf.train.Checkpoint(model=model).restore(path).assert_consumed()
    np.testing.assert_array_equal(taps(X)[1]["h2"], before)


def test_errors():
    model = _model()
    with pytest.raises(UnknownNameError, match="Did you mean: h2"):
        Taps(model, ["h22"])
    with pytest.raises(ConfigError, match="model input"):
        Taps(model, ["obs"])
    inp = keras.Input((3,))
    shared = keras.layers.Dense(3, name="shared")
    twice = keras.Model(inp, shared(shared(inp)))
    with pytest.raises(ConfigError, match="called 2 times"):
        Taps(twice, ["shared"])


def test_statistics_and_summaries(tmp_path):
    acts = {"h": tf.constant([[0.0, 2.0], [0.0, 4.0]])}
    stats = tap_statistics(acts)
    assert float(stats["h/mean"]) == 1.5
    assert float(stats["h/zero_fraction"]) == 0.5
    np.testing.assert_allclose(stats["h/std"], np.std([0.0, 2.0, 0.0, 4.0]), rtol=1e-6)
    writer = tf.summary.create_file_writer(str(tmp_path))
    write_tap_summaries(acts, 7, writer=writer)
    writer.flush()
    tags = set()
    for f in tmp_path.iterdir():
        for event in tf.compat.v1.train.summary_iterator(str(f)):
            tags |= {v.tag for v in event.summary.value}
    assert {"activations/h", "activations/h/mean", "activations/h/zero_fraction"} <= tags
