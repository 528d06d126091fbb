"""The learner alone, with exact numbers: each group's tape sees only its own optimizer's
variables and its loss only the terms it lists; a delayed phase skips exactly."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from rl_sever.core.learner import PHASES_PER_SEED, Learner, Phase
from rl_sever.core.optim import ModuleOptimizer


def setup():
    x, y, z = tf.Variable(2.0), tf.Variable(3.0), tf.Variable(5.0)  # z: in no optimizer
    opts = {g: ModuleOptimizer({g: [v]}, learning_rate=1.0, kind="sgd", name=g)
            for g, v in (("a", x), ("b", y))}
    terms = {"a": ["ta"], "b": ["tb"]}
    weights = {"ta": tf.Variable(1.0), "tb": tf.Variable(0.5)}
    learner = Learner(opts, terms.__getitem__, weights.__getitem__)

    def losses(batch, seed):  # ta reads every variable; tb only y
        return {"ta": x * y * z, "tb": tf.square(y)}, {"m": z}

    return learner, losses, (x, y, z)


def test_each_group_gets_exactly_the_gradient_of_its_own_terms():
    learner, losses, (x, y, z) = setup()
    group_losses, values, grads = learner.gradients(Phase(("a", "b"), losses), None)
    assert [g.numpy() for g in grads["a"]] == [15.0]  # d(x y z)/dx = y z
    # b's loss is 0.5 y^2 only: its gradient is 0.5 * 2y = 3, not 3 + x z (ta reads y too)
    assert [g.numpy() for g in grads["b"]] == [3.0]
    assert set(grads) == {"a", "b"} and float(values["m"]) == 5.0  # z: in no tape, no update
    assert float(group_losses["b"]) == 4.5


def test_a_delayed_phase_runs_on_every_kth_step_only():
    learner, losses, (x, y, z) = setup()
    phases = [Phase(("b",), losses), Phase(("a",), losses, keys=("ta",), every=2)]
    seed = tf.constant([0, 0], tf.int32)
    out = learner.step(phases, None, seed, tf.constant(1))
    assert out["ta"].numpy().tolist() == [0.0, 0.0] and float(x.numpy()) == 2.0  # skipped
    assert out["tb"].numpy().tolist() == [9.0, 1.0] and float(y.numpy()) == 0.0  # 3 - 3
    out = learner.step(phases, None, seed, tf.constant(2))
    assert out["ta"].numpy().tolist()[1] == 1.0 and float(x.numpy()) == 2.0  # y = 0: zero grad
    with pytest.raises(ValueError, match="phases share one step's seed"):
        learner.step(phases * PHASES_PER_SEED, None, seed, tf.constant(1))
    assert np.isclose(float(z.numpy()), 5.0)
