"""rl_sever.core.counters: the loop's reads and writes of the checkpointed counters."""

import numpy as np
import pytest
import tensorflow as tf

from rl_sever.core import counters


@pytest.mark.parametrize("dtype", [tf.int64, tf.int32])
def test_read_and_write_agree_with_the_variables_own_methods(dtype):
    var = tf.Variable(7, dtype=dtype)
    assert counters.read(var) == 7 and isinstance(counters.read(var), int)
    counters.write(var, 2**30 + 3)
    assert int(var.numpy()) == 2**30 + 3 and var.dtype == dtype
    var.assign(11)
    assert counters.read(var) == 11


def test_a_checkpoint_saves_what_write_set(tmp_path):
    var = tf.Variable(0, dtype=tf.int64)
    counters.write(var, 4096)
    path = tf.train.Checkpoint(step=var).save(str(tmp_path / "ckpt"))
    counters.write(var, 1)
    tf.train.Checkpoint(step=var).restore(path)
    assert counters.read(var) == 4096


def test_a_mirrored_variable_takes_its_own_methods():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        var = tf.Variable(3, dtype=tf.int64)
    assert isinstance(var, tf.distribute.DistributedValues)
    counters.write(var, 5)
    assert counters.read(var) == 5
    assert [int(v.numpy()) for v in strategy.experimental_local_results(var)] == [5]


def test_inside_compiled_code_the_variables_methods_are_traced():
    var = tf.Variable(0, dtype=tf.int64)

    @tf.function
    def bump(value):
        counters.write(var, value)
        return var.read_value()

    assert int(bump(tf.constant(9, tf.int64))) == 9
    assert int(bump(tf.constant(12, tf.int64))) == 12
    np.testing.assert_array_equal(var.numpy(), 12)
