"""Gate: open routes through the layer, closed through the alternative; no retrace on flips."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from rl_sever.errors import ConfigError
from rl_sever.isolation import Gate


def _dense(units, name):
    layer = keras.layers.Dense(units, bias_initializer="ones", name=name)
    layer.build((None, 3))
    return layer


def _forward_and_grads(gate, x):
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = gate(x)
        loss = tf.reduce_sum(y**2)
    grads = tape.gradient(loss, [x] + gate.layer.trainable_variables)
    return y, grads


def _as_arrays(grads):
    # Eagerly an untaken branch is disconnected (None); compiled, tf.cond gives exact zeros.
    return [np.zeros(1) if g is None else g.numpy() for g in grads]


def test_open_and_closed_forward_and_gradients_eager_equals_compiled():
    inner = _dense(3, "inner")
    gate = Gate(inner)
    x = tf.constant([[1.0, -2.0, 0.5]])
    compiled = tf.function(_forward_and_grads)
    for is_open in (True, False, True):
        gate.is_open.assign(is_open)
        y_e, g_e = _forward_and_grads(gate, x)
        y_c, g_c = compiled(gate, x)
        np.testing.assert_array_equal(y_e, y_c)
        np.testing.assert_array_equal(y_e, inner(x) if is_open else x)
        if is_open:
            assert all(np.any(g.numpy() != 0) for g in g_e)
        else:
            assert g_e[1:] == [None, None]  # eager: disconnected
            assert all(np.all(g.numpy() == 0) for g in g_c[1:])  # compiled: exact zero
            np.testing.assert_array_equal(g_e[0], 2 * x)  # identity path still carries gradient
        for a, b in zip(_as_arrays(g_e), _as_arrays(g_c)):
            np.testing.assert_array_equal(np.broadcast_to(a, b.shape), b)
    assert compiled.experimental_get_tracing_count() == 1


def test_alternative_branch_and_shape_check():
    gate = Gate(_dense(2, "main"), _dense(2, "fallback"), is_open=False)
    x = tf.ones((4, 3))
    np.testing.assert_array_equal(gate(x), gate.alternative(x))
    with pytest.raises(ConfigError, match="alternative"):
        Gate(_dense(2, "wide"))(x)  # identity gives 3 units, the layer 2


def test_shared_flag_switches_gates_together_without_retrace():
    flag = tf.Variable(True)
    a, b = Gate(_dense(3, "a"), is_open=flag), Gate(_dense(3, "b"), is_open=flag)
    x = tf.ones((1, 3))
    f = tf.function(lambda x: a(x) + b(x))
    f(x)
    flag.assign(False)
    np.testing.assert_array_equal(f(x), 2 * x)
    assert f.experimental_get_tracing_count() == 1
    with pytest.raises(ConfigError, match="scalar bool"):
        Gate(_dense(3, "c"), is_open=tf.Variable(1.0))


def test_open_close_inside_compiled_step():
    gate = Gate(_dense(3, "inner"))
    gate(tf.ones((1, 3)))

    @tf.function
    def close_and_run(x):
        gate.close()
        return gate(x)

    x = tf.ones((1, 3))
    np.testing.assert_array_equal(close_and_run(x), x)
    assert not bool(gate.is_open.numpy())


def test_flag_round_trips_through_checkpoint_inside_a_model(tmp_path):
    inp = keras.Input((3,))
    gate = Gate(keras.layers.Dense(3), name="gate")
    model = keras.Model(inp, keras.layers.Dense(1)(gate(inp)))
    gate.close()
    path = tf.train.Checkpoint(model=model).save(str(tmp_path / "ck"))
    gate.open()
    tf.train.Checkpoint(model=model).restore(path).assert_consumed()
    assert not bool(gate.is_open.numpy())
    assert gate.is_open in model.non_trainable_weights


def test_config_round_trip():
    gate = Gate(_dense(3, "inner"), is_open=False)
    clone = Gate.from_config(gate.get_config())
    assert isinstance(clone.layer, keras.layers.Dense) and not bool(clone.is_open.numpy())
