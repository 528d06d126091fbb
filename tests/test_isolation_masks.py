"""Weight masks (pruning), activation masks and gradient masks."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from rl_sever.core.optim import ModuleOptimizer
from rl_sever.errors import ConfigError
from rl_sever.isolation import (
    ActivationMask,
    GradientMask,
    MaskedConv2D,
    MaskedDense,
)

X = tf.constant(np.random.default_rng(0).normal(size=(8, 4)), tf.float32)


def _dense_mask():
    mask = np.ones((4, 3), bool)
    mask[0, 0] = mask[2, 1] = mask[3, :] = False
    return mask


def _kernel_grad(layer, x):
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x) ** 2)
    return tape.gradient(loss, layer._kernel)


def test_masked_dense_forward_and_exact_zero_gradient_eager_equals_compiled():
    layer = MaskedDense(3, name="pruned")
    layer(X)
    raw = layer._kernel.numpy().copy()
    mask = _dense_mask()
    layer.set_mask(mask)
    np.testing.assert_array_equal(layer._kernel.numpy(), np.where(mask, raw, 0.0))
    np.testing.assert_allclose(layer(X), X.numpy() @ np.where(mask, raw, 0.0), rtol=1e-6)
    g_eager = _kernel_grad(layer, X).numpy()
    g_comp = tf.function(_kernel_grad)(layer, X).numpy()
    np.testing.assert_array_equal(g_eager, g_comp)
    assert np.all(g_eager[~mask] == 0) and np.all(g_eager[mask] != 0)


@pytest.mark.parametrize("fused", [False, True])  # Keras's update, or rl_sever.core.fused_update
def test_masked_entries_stay_zero_under_adam_after_momentum_without_retrace(fused):
    layer = MaskedDense(3)
    layer(X)
    opt = ModuleOptimizer({"net": layer.trainable_variables}, learning_rate=0.05, kind="adam",
                          fused=fused)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean((layer(X) - 1.0) ** 2)
        grads = tape.gradient(loss, opt.all_variables)
        opt.apply(grads)
        return grads[0]

    for _ in range(3):
        step()  # every entry now has Adam momentum
    mask = _dense_mask()
    layer.set_mask(mask)
    for _ in range(5):
        grad = step()
        assert np.all(layer._kernel.numpy()[~mask] == 0.0)
        assert np.all(grad.numpy()[~mask] == 0.0)
    assert np.all(layer._kernel.numpy()[mask] != 0.0)
    assert step.experimental_get_tracing_count() == 1


def test_prune_by_magnitude_is_monotone_and_checkpointed(tmp_path):
    layer = MaskedDense(5)
    layer(X)
    layer.prune(0.25)
    assert layer.sparsity == pytest.approx(0.25)
    first = layer.weight_mask.numpy().copy()
    kept = np.abs(layer._kernel.numpy())[first]
    assert kept.min() > 0
    layer.prune(0.5)
    assert layer.sparsity == pytest.approx(0.5)
    assert not np.any(layer.weight_mask.numpy() & ~first)  # pruned entries stay pruned
    path = tf.train.Checkpoint(layer=layer).save(str(tmp_path / "ck"))
    saved = layer.weight_mask.numpy().copy()
    layer.set_mask(np.ones((4, 5), bool))
    tf.train.Checkpoint(layer=layer).restore(path).assert_consumed()
    np.testing.assert_array_equal(layer.weight_mask.numpy(), saved)
    with pytest.raises(ConfigError, match="mask shape"):
        layer.set_mask(np.ones((5, 4), bool))


def test_masked_conv2d_zero_gradient_on_masked_taps():
    conv = MaskedConv2D(2, 3, padding="same")
    x = tf.random.normal((2, 6, 6, 1))
    conv(x)
    conv.prune(0.5)
    mask = conv.weight_mask.numpy()
    g = _kernel_grad(conv, x).numpy()
    assert np.all(g[~mask] == 0) and np.all(g[mask] != 0)
    assert np.all(conv._kernel.numpy()[~mask] == 0)


@pytest.mark.parametrize("compiled", [False, True])
def test_activation_mask_units_forward_and_gradient(compiled):
    dense, mask_layer = keras.layers.Dense(3), ActivationMask()
    mask_layer(dense(X))  # variables exist before tracing

    def run(x):
        with tf.GradientTape() as tape:
            y = mask_layer(dense(x))
            loss = tf.reduce_sum(y**2)
        return y, tape.gradient(loss, dense.kernel)

    run = tf.function(run) if compiled else run
    run(X)
    mask_layer.set_mask([True, False, True])
    y, g = run(X)
    assert np.all(y.numpy()[:, 1] == 0) and np.all(y.numpy()[:, [0, 2]] != 0)
    assert np.all(g.numpy()[:, 1] == 0) and np.all(g.numpy()[:, [0, 2]] != 0)
    if compiled:
        assert run.experimental_get_tracing_count() == 1


def test_activation_mask_channels_first_and_checkpoint(tmp_path):
    layer = ActivationMask(axis=1)
    x = tf.ones((2, 3, 4, 4))
    layer(x)
    layer.set_mask([1, 0, 1])
    path = tf.train.Checkpoint(layer=layer).save(str(tmp_path / "ck"))
    layer.set_mask([1, 1, 1])
    tf.train.Checkpoint(layer=layer).restore(path).assert_consumed()
    y = layer(x).numpy()
    assert np.all(y[:, 1] == 0) and np.all(y[:, [0, 2]] == 1)


def test_gradient_mask_elementwise_and_per_variable():
    a, b, c = tf.Variable([1.0, 2.0, 3.0]), tf.Variable(4.0), tf.Variable(5.0)
    gm = GradientMask([a, b])
    gm.set(a, [True, False, True])
    gm.block(b)
    grads = gm([tf.constant([7.0, 8.0, 9.0]), tf.constant(6.0), tf.constant(1.0)], [a, b, c])
    np.testing.assert_array_equal(grads[0], [7.0, 0.0, 9.0])
    assert float(grads[1]) == 0.0 and float(grads[2]) == 1.0  # c is not covered: untouched
    assert gm([None, None], [a, b]) == [None, None]
    per_var = GradientMask([a], per_variable=True)
    per_var.set(a, False)
    np.testing.assert_array_equal(per_var([tf.ones(3)], [a])[0], [0.0, 0.0, 0.0])
    with pytest.raises(ConfigError, match="mask shape"):
        gm.set(a, [True, False])
    with pytest.raises(KeyError):
        gm.block(c)


def test_gradient_mask_with_adam_keeps_masked_rows_bit_identical(tmp_path):
    layer = keras.layers.Dense(3)
    layer(X)
    opt = ModuleOptimizer({"net": layer.trainable_variables}, learning_rate=0.05)
    gm = GradientMask(opt.all_variables)
    rows = np.array([[True], [False], [True], [False]]).repeat(3, axis=1)
    gm.set(layer.kernel, rows)  # set before the first update: no momentum on masked rows
    before = layer.kernel.numpy().copy()

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean((layer(X) - 1.0) ** 2)
        opt.apply(gm(tape.gradient(loss, opt.all_variables), opt.all_variables))

    for _ in range(4):
        step()
    after = layer.kernel.numpy()
    np.testing.assert_array_equal(after[~rows], before[~rows])
    assert np.all(after[rows] != before[rows])
    gm.allow(layer.kernel)
    step()
    assert np.all(layer.kernel.numpy()[~rows] != before[~rows])
    assert step.experimental_get_tracing_count() == 1
    path = tf.train.Checkpoint(gm=gm).save(str(tmp_path / "ck"))
    gm.block(layer.kernel)
    tf.train.Checkpoint(gm=gm).restore(path).assert_consumed()
    assert np.all(gm.mask_of(layer.kernel).numpy())
