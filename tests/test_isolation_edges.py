"""sever_edge: exactly one connection cut, layers and weights shared, clear errors."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from rl_sever.errors import ConfigError, UnknownNameError
from rl_sever.isolation import sever_edge

X = tf.constant(np.random.default_rng(1).normal(size=(5, 3)), tf.float32)


def _skip_model():
    """obs -> d1 -> d2 -> add(d1, d2) -> head: d1 reaches add directly and through d2."""
    inp = keras.Input((3,), name="obs")
    h1 = keras.layers.Dense(4, activation="tanh", name="d1")(inp)
    h2 = keras.layers.Dense(4, activation="tanh", name="d2")(h1)
    out = keras.layers.Dense(1, name="head")(keras.layers.Add(name="add")([h1, h2]))
    return keras.Model(inp, out)


def _reference(model, x, skip):
    """The cut model written by hand: `skip` replaces d1's output on the skip connection."""
    h1 = model.get_layer("d1")(x)
    h2 = model.get_layer("d2")(h1)
    return model.get_layer("head")(skip(h1) + h2)


def _grads(fn, variables):
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(fn() ** 2)
    return loss, tape.gradient(loss, variables)


@pytest.mark.parametrize(
    "mode, skip",
    [("backward", tf.stop_gradient), ("both", lambda h: tf.zeros_like(h) + 0.5)],
)
def test_only_the_chosen_edge_is_cut(mode, skip):
    model = _skip_model()
    cut = sever_edge(model, "d1", "add", mode, value=0.5)
    d1 = model.get_layer("d1")
    variables = d1.trainable_variables
    got_loss, got = _grads(lambda: cut(X), variables)
    want_loss, want = _grads(lambda: _reference(model, X, skip), variables)
    _, full = _grads(lambda: model(X), variables)
    np.testing.assert_allclose(got_loss, want_loss, rtol=1e-6)
    for g, w, f in zip(got, want, full):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-7)
        assert np.any(g.numpy() != 0)  # d1 still trains through d2
        assert not np.allclose(g, f)  # but no longer through the skip edge
    if mode == "backward":
        np.testing.assert_array_equal(cut(X), model(X))

    @tf.function
    def compiled_step():
        return _grads(lambda: cut(X), variables)

    compiled_loss, compiled = compiled_step()
    np.testing.assert_allclose(compiled_loss, got_loss, rtol=1e-6)
    for g, c in zip(got, compiled):
        np.testing.assert_allclose(g, c, rtol=1e-5, atol=1e-6)


def test_layers_and_weights_are_shared():
    model = _skip_model()
    cut = sever_edge(model, "d1", "add")
    for name in ("d1", "d2", "add", "head"):
        assert cut.get_layer(name) is model.get_layer(name)
    cut_vars = {id(v) for v in cut.trainable_variables}
    assert cut_vars == {id(v) for v in model.trainable_variables}
    model.get_layer("head").bias.assign([3.0])
    np.testing.assert_array_equal(cut(X), model(X))


def test_sequential_input_edge_both_ways():
    model = keras.Sequential([keras.Input((3,), name="obs"), keras.layers.Dense(2, name="a")])
    cut = sever_edge(model, "obs", "a", "both")
    bias = model.get_layer("a").bias.numpy()
    np.testing.assert_array_equal(cut(X), np.broadcast_to(bias, (5, 2)))


def test_switchable_cut_flips_without_retrace_and_checkpoints(tmp_path):
    model = _skip_model()
    cut = sever_edge(model, "d1", "add", switchable=True)
    active = cut.get_layer("cut_d1_add").active
    d1_vars = model.get_layer("d1").trainable_variables

    @tf.function
    def step():
        return _grads(lambda: cut(X), d1_vars)[1]

    severed = step()
    active.assign(False)
    restored = step()
    _, full = _grads(lambda: model(X), d1_vars)
    _, want = _grads(lambda: _reference(model, X, tf.stop_gradient), d1_vars)
    for s, r, f, w in zip(severed, restored, full, want):
        np.testing.assert_allclose(s, w, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(r, f, rtol=1e-5, atol=1e-7)
    assert step.experimental_get_tracing_count() == 1
    path = tf.train.Checkpoint(model=cut).save(str(tmp_path / "ck"))
    active.assign(True)
    tf.train.Checkpoint(model=cut).restore(path).assert_consumed()
    assert not bool(active.numpy())


def test_constant_must_match_edge_shape():
    model = _skip_model()
    cut = sever_edge(model, "d1", "add", "both", value=np.arange(4.0))
    np.testing.assert_allclose(
        cut(X), _reference(model, X, lambda h: tf.zeros_like(h) + np.arange(4.0)), rtol=1e-6
    )
    with pytest.raises(ConfigError, match="per-sample shape"):
        sever_edge(model, "d1", "add", "both", value=np.zeros(3))


def test_clear_errors():
    model = _skip_model()
    with pytest.raises(UnknownNameError, match="Did you mean: head"):
        sever_edge(model, "d1", "haed")
    with pytest.raises(ConfigError, match="does not feed 'head' directly.*'add', 'd2'"):
        sever_edge(model, "d1", "head")
    with pytest.raises(ConfigError, match="unknown edge mode"):
        sever_edge(model, "d1", "add", "forward")

    class Sub(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(ConfigError, match="not a Keras functional model"):
        sever_edge(Sub(), "a", "b")
