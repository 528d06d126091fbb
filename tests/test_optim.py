"""ModuleOptimizer: per-module frozen flags (bit-identical variables and optimizer slots, left out
of the global-norm clip, no retrace when flipped) and checkpoint round trips."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from rl_sever.core.optim import ModuleOptimizer
from rl_sever.errors import ConfigError


def make(kind="adam", lr=0.1, max_grad_norm=None, fused=False):
    a = [tf.Variable(np.arange(6, dtype=np.float32).reshape(3, 2), name="a_kernel"),
         tf.Variable(np.zeros(2, np.float32), name="a_bias")]
    b = [tf.Variable(np.ones(2, np.float32), name="b_kernel")]
    opt = ModuleOptimizer({"a": a, "b": b, "empty": []}, learning_rate=lr, kind=kind,
                          max_grad_norm=max_grad_norm, fused=fused)
    return opt, a, b


def grads_for(opt, scale=1.0):
    rng = np.random.default_rng(0)
    return [tf.constant(scale * rng.normal(size=v.shape), tf.float32) for v in opt.all_variables]


def values(variables):
    return [np.array(v.numpy(), copy=True) for v in variables]


def slots(opt, module):
    return values(opt.optimizers[module].variables)


def assert_same(xs, ys):
    assert len(xs) == len(ys)
    for x, y in zip(xs, ys):
        np.testing.assert_array_equal(x, y)


def assert_all_differ(xs, ys):
    assert all(not np.array_equal(x, y) for x, y in zip(xs, ys))


def test_modules_and_order():
    opt, a, b = make()
    assert opt.module_names == ["a", "b"]  # empty modules are dropped
    assert opt.all_variables == [*a, *b]
    assert opt.variables_of("b") == b


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("kind", ["adam", "rmsprop", "sgd"])
def test_frozen_module_variables_and_slots_stay_bit_identical(kind, fused):
    opt, a, b = make(kind, fused=fused)
    step = tf.function(lambda grads: opt.apply(grads))
    step(grads_for(opt))  # slots become non-zero
    opt.set_frozen("a", True)
    a_before, a_slots, b_before = values(a), slots(opt, "a"), values(b)
    for i in range(3):
        step(grads_for(opt, scale=i + 1.0))
    assert_same(values(a), a_before)
    assert_same(slots(opt, "a"), a_slots)
    assert_all_differ(values(b), b_before)
    # Unfreezing resumes updates, with the same compiled step.
    opt.set_frozen("a", False)
    step(grads_for(opt))
    assert_all_differ(values(a), a_before)
    assert step.experimental_get_tracing_count() == 1


def test_frozen_module_is_left_out_of_the_global_norm_clip():
    # SGD with lr 1: the update is exactly -clip_scale * g.
    opt, a, b = make("sgd", lr=1.0, max_grad_norm=1.0)
    step = tf.function(lambda grads: opt.apply(grads))
    big_a = [tf.fill(v.shape, 10.0) for v in a]
    g_b = [tf.constant([1.2, 1.6])]  # norm 2
    opt.set_frozen("a", True)
    b0 = values(b)[0]
    norm = float(step([*big_a, *g_b]))
    assert norm == pytest.approx(2.0)  # the frozen module's gradients do not count
    np.testing.assert_allclose(values(b)[0], b0 - np.array([1.2, 1.6]) / (2.0 + 1e-6), rtol=1e-6)

    opt.set_frozen("a", False)
    b1 = values(b)[0]
    norm = float(step([*big_a, *g_b]))
    full = np.sqrt(8 * 100.0 + 4.0)
    assert norm == pytest.approx(full, rel=1e-6)
    np.testing.assert_allclose(values(b)[0], b1 - np.array([1.2, 1.6]) / (full + 1e-6), rtol=1e-5)
    assert step.experimental_get_tracing_count() == 1


def test_learning_rate_variable_changes_without_retrace_and_none_gradients_are_skipped():
    opt, a, b = make("sgd", lr=1.0)
    step = tf.function(lambda g_a, g_b: opt.apply([*g_a, *g_b]))
    ones_a = [tf.ones(v.shape) for v in a]
    before = values(b)[0]
    step(ones_a, [tf.ones(2)])
    np.testing.assert_array_equal(values(b)[0], before - 1.0)
    opt.learning_rate.assign(0.25)
    step(ones_a, [tf.ones(2)])
    np.testing.assert_array_equal(values(b)[0], before - 1.25)
    assert step.experimental_get_tracing_count() == 1
    # A None gradient leaves its variable alone.
    a_before, b_before = values(a), values(b)
    opt.apply([None, tf.ones(2), tf.ones(2)])
    np.testing.assert_array_equal(a[0].numpy(), a_before[0])
    assert not np.array_equal(a[1].numpy(), a_before[1])
    assert not np.array_equal(b[0].numpy(), b_before[0])


def test_checkpoint_round_trip(tmp_path):
    opt, a, b = make("adam")
    step = tf.function(lambda grads: opt.apply(grads))
    for i in range(3):
        step(grads_for(opt, scale=i + 1.0))
    opt.set_frozen("b", True)
    opt.learning_rate.assign(0.05)
    path = tf.train.Checkpoint(opt=opt, a=a, b=b).save(str(tmp_path / "ckpt"))

    opt2, a2, b2 = make("adam", lr=0.1)
    status = tf.train.Checkpoint(opt=opt2, a=a2, b=b2).restore(path)
    status.assert_existing_objects_matched()
    assert bool(opt2.frozen["b"].numpy()) and not bool(opt2.frozen["a"].numpy())
    assert float(opt2.learning_rate.numpy()) == pytest.approx(0.05)
    assert_same(values(a2 + b2), values(a + b))
    for module in ("a", "b"):
        assert_same(slots(opt2, module), slots(opt, module))
    # Both continue identically (the frozen flag included).
    step2 = tf.function(lambda grads: opt2.apply(grads))
    step(grads_for(opt))
    step2(grads_for(opt2))
    assert_same(values(a2 + b2), values(a + b))


def test_errors():
    opt, _, _ = make()
    with pytest.raises(ConfigError, match="unknown module 'c'"):
        opt.set_frozen("c", True)
    with pytest.raises(ConfigError, match="unknown optimizer"):
        ModuleOptimizer({"a": [tf.Variable(1.0)]}, learning_rate=0.1, kind="adagrad")
    with pytest.raises(ValueError, match="one gradient per variable"):
        opt.apply([None])


@pytest.mark.parametrize("kind", ["adam", "rmsprop", "sgd"])
def test_fused_kernels_follow_the_keras_optimizer(kind):
    """One fused op per variable (rl_sever.core.fused_update) computes what Keras's own update
    computes: variables, slots and the iteration counter over several steps."""
    opt, a, b = make(kind, lr=0.05, fused=True)
    ref, ra, rb = make(kind, lr=0.05)  # Keras's apply_gradients
    assert ref._fused == {} and sorted(opt._fused) == ["a", "b"]
    step = tf.function(lambda grads: opt.apply(grads))
    ref_step = tf.function(lambda grads: ref.apply(grads))
    for i in range(5):
        step(grads_for(opt, scale=i + 0.5))
        ref_step(grads_for(ref, scale=i + 0.5))
    graph_ops = {op.type for op in step.get_concrete_function(grads_for(opt)).graph.get_operations()}
    fused_op = {"adam": "ResourceApplyAdam", "rmsprop": "ResourceApplyRMSProp",
                "sgd": "ResourceApplyGradientDescent"}[kind]
    fn_ops = {n.op for f in step.get_concrete_function(grads_for(opt)).graph.as_graph_def().library.function
              for n in f.node_def}
    assert fused_op in graph_ops | fn_ops
    for x, y in zip(values(a + b), values(ra + rb)):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
    assert not np.allclose(values(a)[0], np.arange(6, dtype=np.float32).reshape(3, 2))
    for module in ("a", "b"):
        for x, y in zip(slots(opt, module), slots(ref, module)):
            # The kernels round (1 - beta) in float32, Keras in float64: ~1e-5 relative.
            np.testing.assert_allclose(x, y, rtol=5e-5, atol=1e-7)
    assert int(opt.optimizers["a"].iterations.numpy()) == 5


def test_fused_update_leaves_unsupported_settings_to_keras():
    import keras

    from rl_sever.core.fused_update import FusedUpdate

    v = tf.Variable(np.ones(3, np.float32))
    for keras_opt in (keras.optimizers.Adam(amsgrad=True), keras.optimizers.RMSprop(centered=True),
                      keras.optimizers.SGD(momentum=0.9), keras.optimizers.Adam(weight_decay=0.1),
                      keras.optimizers.Adagrad()):
        keras_opt.build([v])
        assert not FusedUpdate(keras_opt, lambda: 0.1, [v]).apply([(tf.ones(3), v)])
    np.testing.assert_array_equal(v.numpy(), np.ones(3, np.float32))
