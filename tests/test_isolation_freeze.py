"""Freezing through ModuleOptimizer flags and Keras layers, and freeze schedules."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from rl_sever.core.optim import ModuleOptimizer
from rl_sever.errors import ConfigError
from rl_sever.isolation import (
    FreezeSchedule,
    ModuleRef,
    freeze,
    freeze_flag,
    frozen,
    is_frozen,
    unfreeze,
)


def _setup():
    encoder, actor, critic = (keras.layers.Dense(4), keras.layers.Dense(2), keras.layers.Dense(1))
    x = tf.random.normal((8, 3))
    encoder(x)
    actor(tf.zeros((1, 4)))
    critic(tf.zeros((1, 4)))
    modules = {
        "encoder": encoder.trainable_variables,
        "actor": actor.trainable_variables,
        "critic": critic.trainable_variables,
    }
    opt = ModuleOptimizer(modules, learning_rate=1e-2, kind="adam")

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            h = encoder(x)
            loss = tf.reduce_mean(actor(h) ** 2) + tf.reduce_mean((critic(h) - 1.0) ** 2)
        opt.apply(tape.gradient(loss, opt.all_variables))

    return opt, step


def _snapshot(opt, module):
    """Variables and every optimizer slot (incl. the iteration counter) of one module."""
    state = opt.variables_of(module) + list(opt.optimizers[module].variables)
    return [v.numpy().copy() for v in state]


def _same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b))


def test_frozen_module_bit_identical_others_train_no_retrace():
    opt, step = _setup()
    step()  # warm Adam momentum so a frozen module would drift if it were merely given zeros
    freeze((opt, "encoder"))
    enc, act = _snapshot(opt, "encoder"), _snapshot(opt, "actor")
    for _ in range(4):
        step()
    assert _same(_snapshot(opt, "encoder"), enc)
    assert not _same(_snapshot(opt, "actor"), act)
    unfreeze(ModuleRef(opt, "encoder"))
    step()
    assert not _same(_snapshot(opt, "encoder"), enc)
    assert step.experimental_get_tracing_count() == 1


def test_frozen_context_restores_previous_state_and_is_frozen():
    opt, _ = _setup()
    target = (opt, "critic")
    assert not is_frozen(target)
    with frozen(target):
        assert is_frozen(target)
        with frozen(target):
            pass
        assert is_frozen(target)  # inner block restored "frozen", not "unfrozen"
    assert not is_frozen(target)


def test_freeze_inside_compiled_code_and_flag_access():
    opt, _ = _setup()

    @tf.function
    def toggle():
        freeze((opt, "actor"))
        return freeze_flag((opt, "actor")).read_value()

    assert bool(toggle())
    assert is_frozen((opt, "actor"))
    with pytest.raises(RuntimeError, match="eager-only"):
        tf.function(lambda: is_frozen((opt, "actor")))()


def test_frozen_context_inside_compiled_code_restores_the_flag_it_found():
    """`with frozen(...)` in a tf.function: the update inside the block leaves the module
    bit-identical, and the flag goes back to its value at each call (not at trace time)."""
    opt, step = _setup()
    step()
    target = (opt, "critic")

    @tf.function
    def step_critic_frozen():
        with frozen(target):
            inside = freeze_flag(target).read_value()
            step.python_function()
        return inside

    critic, actor = _snapshot(opt, "critic"), _snapshot(opt, "actor")
    assert bool(step_critic_frozen())
    assert _same(_snapshot(opt, "critic"), critic)
    assert not _same(_snapshot(opt, "actor"), actor)
    assert not is_frozen(target)
    freeze(target)
    assert bool(step_critic_frozen()) and is_frozen(target)  # found frozen: stays frozen
    unfreeze(target)
    assert bool(step_critic_frozen()) and not is_frozen(target)
    assert step_critic_frozen.experimental_get_tracing_count() == 1
    step()
    assert not _same(_snapshot(opt, "critic"), critic)


def test_frozen_context_inside_compiled_code_left_set_by_a_failing_op():
    """As documented: a graph has no `finally`, so an op failing inside the block before the
    flag's last use there (as an optimizer step's numerics check) leaves the flag set; the
    caller restores it."""
    opt, _ = _setup()
    target = (opt, "critic")

    @tf.function
    def failing(x):
        with frozen(target):
            checked = tf.debugging.check_numerics(x, "x")
            with tf.control_dependencies([checked]):  # the step reads the flag after the check
                freeze_flag(target).read_value()

    with pytest.raises(tf.errors.InvalidArgumentError):
        failing(tf.constant(float("nan")))
    assert is_frozen(target)
    unfreeze(target)
    failing(tf.constant(1.0))
    assert not is_frozen(target)


def test_unknown_module_is_a_config_error_with_suggestion():
    opt, _ = _setup()
    with pytest.raises(ConfigError, match="Did you mean: encoder"):
        freeze((opt, "encodr"))
    with pytest.raises(TypeError):
        freeze("encoder")


def test_flags_round_trip_through_checkpoint(tmp_path):
    opt, _ = _setup()
    freeze((opt, "encoder"))
    path = tf.train.Checkpoint(optimizer=opt).save(str(tmp_path / "ck"))
    other, _ = _setup()
    tf.train.Checkpoint(optimizer=other).restore(path)
    assert is_frozen((other, "encoder")) and not is_frozen((other, "actor"))


def test_keras_layer_target_sets_trainable_and_keeps_identity():
    layer = keras.layers.Dense(2)
    layer(tf.zeros((1, 3)))
    kernel = layer.kernel
    freeze(layer)
    assert is_frozen(layer) and layer.trainable_variables == []
    assert layer.weights[0] is kernel
    with pytest.raises(RuntimeError, match="tf.function"):
        tf.function(lambda: unfreeze(layer))()
    unfreeze(layer)
    assert layer.trainable_variables[0] is kernel


def test_schedule_parses_validates_and_round_trips():
    cfg = {"encoder": {"until_step": 100}, "critic": {"from_step": 50}, "actor": {}}
    sched = FreezeSchedule.from_config(cfg)
    assert FreezeSchedule.from_config(sched.to_config()).windows == sched.windows
    assert sched.frozen_at(0) == {"encoder": True, "critic": False, "actor": True}
    assert sched.frozen_at(99)["encoder"] and not sched.frozen_at(100)["encoder"]
    assert sched.frozen_at(50)["critic"]
    assert FreezeSchedule.from_config(None).windows == {}


@pytest.mark.parametrize(
    "bad, match",
    [
        ([{"module": "encoder"}], "map module names"),
        ({"encoder": 100}, "mapping like"),
        ({"encoder": {"until": 100}}, "Did you mean: until_step"),
        ({"encoder": {"until_step": -1}}, "non-negative"),
        ({"encoder": {"until_step": True}}, "non-negative"),
        ({"encoder": {"from_step": 10, "until_step": 10}}, "must exceed"),
    ],
)
def test_schedule_rejects_bad_config(bad, match):
    with pytest.raises(ConfigError, match=match):
        FreezeSchedule.from_config(bad)


def test_schedule_encoder_bit_identical_until_step_then_trains():
    opt, step = _setup()
    sched = FreezeSchedule.from_config({"encoder": {"until_step": 30}})
    sched.validate(opt)
    with pytest.raises(ConfigError):
        FreezeSchedule.from_config({"decoder": {}}).validate(opt)
    enc = _snapshot(opt, "encoder")
    changes = []
    for env_step in range(0, 50, 10):
        changes.append(sched.apply(opt, env_step))
        step()
        if env_step < 30:
            assert _same(_snapshot(opt, "encoder"), enc), env_step
    assert not _same(_snapshot(opt, "encoder"), enc)
    assert changes == [{"encoder": True}, {}, {}, {"encoder": False}, {}]
    assert step.experimental_get_tracing_count() == 1
