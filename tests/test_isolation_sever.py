"""sever / sever_if: forward unchanged, backward blocked (None or exact zero), no retrace."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from rl_sever.isolation import sever, sever_if


def _grads(fn, x):
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = fn(x)
    return y, tape.gradient(y, x)


def test_sever_keeps_forward_and_nested_structure():
    x = {"a": tf.constant([1.0, -2.0]), "b": [tf.constant(3.0), None]}
    y = sever(x)
    assert y["b"][1] is None
    np.testing.assert_array_equal(y["a"], x["a"])
    assert float(y["b"][0]) == 3.0


@pytest.mark.parametrize("compiled", [False, True])
def test_sever_disconnects(compiled):
    def product(x):
        return tf.reduce_sum(sever(x) * x)  # d/dx = sever(x): the severed factor adds nothing

    def only(x):
        return tf.reduce_sum(sever(x))

    wrap = tf.function if compiled else (lambda f: f)
    x = tf.constant([1.0, 2.0])
    y, g = _grads(wrap(product), x)
    assert float(y) == 5.0
    np.testing.assert_array_equal(g, [1.0, 2.0])
    assert _grads(wrap(only), x)[1] is None


def test_sever_if_gradient_eager_and_compiled_identical_without_retrace():
    flag = tf.Variable(False)
    x = tf.constant([1.0, -3.0])

    def loss(x):
        return tf.reduce_sum(sever_if(flag, x) ** 2)

    compiled = tf.function(lambda x: _grads(loss, x))
    for severed in (False, True, False):
        flag.assign(severed)
        y_e, g_e = _grads(loss, x)
        y_c, g_c = compiled(x)
        assert float(y_e) == float(y_c) == 10.0
        expected = [0.0, 0.0] if severed else [2.0, -6.0]
        np.testing.assert_array_equal(g_e, expected)  # exact zero, not None, while severed
        np.testing.assert_array_equal(g_c, expected)
    assert compiled.experimental_get_tracing_count() == 1


def test_sever_if_flag_round_trips_through_checkpoint(tmp_path):
    flag = tf.Variable(True)
    path = tf.train.Checkpoint(flag=flag).save(str(tmp_path / "ck"))
    flag.assign(False)
    tf.train.Checkpoint(flag=flag).restore(path).assert_consumed()
    _, g = _grads(lambda x: sever_if(flag, x) * 2.0, tf.constant(1.0))
    assert float(g) == 0.0


def test_sever_if_rejects_non_scalar_predicate():
    with pytest.raises(ValueError, match="scalar"):
        sever_if(tf.constant([True, False]), tf.constant([1.0, 2.0]))


def test_sever_works_on_symbolic_keras_tensors():
    inp = keras.Input((2,))
    base = keras.layers.Dense(2, name="base")
    head = keras.layers.Dense(1, name="head")
    model = keras.Model(inp, head(sever(base(inp))))
    x = tf.ones((3, 2))
    with tf.GradientTape() as tape:
        y = tf.reduce_sum(model(x))
    g_base = tape.gradient(y, base.trainable_variables)
    assert g_base == [None, None]
    with tf.GradientTape() as tape:
        y = tf.reduce_sum(model(x))
    assert all(g is not None for g in tape.gradient(y, head.trainable_variables))
