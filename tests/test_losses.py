"""Golden values of the shared loss functions on small fixed inputs (worked out by hand),
and the isolation promised by each: targets and baselines get no gradient."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from rl_sever.objective import losses


def c(x):
    return tf.constant(x, tf.float32)


# -- PPO clipped surrogate ------------------------------------------------------------------
# ratio = exp(logp - logp_old) = exp([0.1, -0.2, 0, -0.5]) = [1.10517, 0.81873, 1, 0.60653]
# clipped to [0.8, 1.2]:                                     [1.10517, 0.81873, 1, 0.8    ]
# -A * ratio          = [-1.10517, 1.63746, -0.5, -1.81959]
# -A * clipped ratio  = [-1.10517, 1.63746, -0.5, -2.4    ]
# elementwise max     = [-1.10517, 1.63746, -0.5, -1.81959] -> mean -0.446825
# |ratio - 1| > 0.2 only for the last sample -> clip_fraction 0.25
# (r - 1) - log r     = [0.0051709, 0.0187308, 0, 0.1065307] -> approx_kl 0.0326081
LOGP = [-0.5, -1.0, -0.2, -2.0]
LOGP_OLD = [-0.6, -0.8, -0.2, -1.5]
ADV = [1.0, -2.0, 0.5, 3.0]


def test_ppo_clip_loss_golden():
    loss, info = losses.ppo_clip_loss(c(LOGP), c(LOGP_OLD), c(ADV), 0.2)
    assert float(loss) == pytest.approx(-0.4468250, abs=1e-6)
    assert float(info["clip_fraction"]) == 0.25
    assert float(info["approx_kl"]) == pytest.approx(0.0326081, abs=1e-6)


def test_ppo_clip_loss_matches_numpy_definition():
    rng = np.random.default_rng(0)
    logp, logp_old = rng.normal(-1, 0.3, 50), rng.normal(-1, 0.3, 50)
    adv = rng.normal(size=50)
    for clip in (0.1, 0.2, 0.3):
        ratio = np.exp(logp - logp_old)
        expected = np.mean(np.maximum(-adv * ratio, -adv * np.clip(ratio, 1 - clip, 1 + clip)))
        loss, info = losses.ppo_clip_loss(c(logp), c(logp_old), c(adv), tf.Variable(clip))
        assert float(loss) == pytest.approx(expected, rel=1e-5, abs=1e-6)
        assert float(info["clip_fraction"]) == pytest.approx(np.mean(np.abs(ratio - 1) > clip))
        kl = np.mean((ratio - 1) - np.log(ratio))
        assert float(info["approx_kl"]) == pytest.approx(kl, rel=1e-4, abs=1e-7)


def test_ppo_clip_gradient_exact():
    # d loss / d logp_i = -A_i * r_i / n where the unclipped term is the max, exactly 0 where
    # the clip binds. Sample 3 has r = 0.6065 < 1 - eps and A = -3: the clipped term wins.
    adv = [1.0, -2.0, 0.5, -3.0]
    logp, logp_old, a = c(LOGP), c(LOGP_OLD), c(adv)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([logp, logp_old, a])
        loss, _ = losses.ppo_clip_loss(logp, logp_old, a, 0.2)
    g = tape.gradient(loss, logp).numpy()
    ratio = np.exp(np.array(LOGP) - np.array(LOGP_OLD))
    expected = -np.array(adv) * ratio / 4
    expected[3] = 0.0  # -A * clip(r) = 2.4 > -A * r = 1.8196: the clipped (constant) term wins
    np.testing.assert_allclose(g, expected, rtol=1e-6)
    assert g[3] == 0.0
    # Old log-probs and advantages are constants of the update (severed).
    assert tape.gradient(loss, logp_old) is None
    assert tape.gradient(loss, a) is None


# -- value loss -----------------------------------------------------------------------------
def test_value_loss_plain_golden():
    # squared errors [0.25, 1, 4] -> 1.75
    assert float(losses.value_loss(c([1.0, 2.0, 3.0]), c([1.5, 1.0, 5.0]))) == pytest.approx(1.75)


def test_value_loss_clipped_golden():
    values, returns, old = c([1.0, 2.0, 3.0]), c([1.5, 1.0, 5.0]), c([0.8, 2.5, 2.0])
    # values - old = [0.2, -0.5, 1.0] clipped to +-0.3 -> [0.2, -0.3, 0.3]
    # v_clipped = [1.0, 2.2, 2.3]; (v_clipped - R)^2 = [0.25, 1.44, 7.29]
    # max with the unclipped [0.25, 1, 4] -> [0.25, 1.44, 7.29] -> mean 2.993333
    assert float(losses.value_loss(values, returns, old, 0.3)) == pytest.approx(8.98 / 3, abs=1e-6)
    # Without a clip range (or without old values) it is the plain loss.
    assert float(losses.value_loss(values, returns, old, None)) == pytest.approx(1.75)
    assert float(losses.value_loss(values, returns, None, 0.3)) == pytest.approx(1.75)


def test_value_loss_gradients():
    values, returns, old = c([1.0, 2.0, 3.0]), c([1.5, 1.0, 5.0]), c([0.8, 2.5, 2.0])
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([values, returns, old])
        plain = losses.value_loss(values, returns)
        clipped = losses.value_loss(values, returns, old, 0.3)
    np.testing.assert_allclose(tape.gradient(plain, values).numpy(), [-1 / 3, 2 / 3, -4 / 3], rtol=1e-6)
    # Samples 2 and 3 take the clipped branch, whose value is constant in `values` there.
    np.testing.assert_allclose(tape.gradient(clipped, values).numpy(), [-1 / 3, 0.0, 0.0], rtol=1e-6)
    for loss in (plain, clipped):
        assert tape.gradient(loss, returns) is None  # regression targets are severed
    assert tape.gradient(clipped, old) is None


# -- entropy, A2C policy gradient, explained variance ----------------------------------------
def test_entropy_loss_golden():
    assert float(losses.entropy_loss(c([0.5, 1.0, 1.5]))) == pytest.approx(-1.0)


def test_policy_gradient_loss_golden_and_gradients():
    logp, adv = c([-1.0, -2.0, -0.5]), c([2.0, -1.0, 1.0])
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([logp, adv])
        loss = losses.policy_gradient_loss(logp, adv)
    # -mean([-2, 2, -0.5]) = 0.5 / 3
    assert float(loss) == pytest.approx(0.5 / 3)
    np.testing.assert_allclose(tape.gradient(loss, logp).numpy(), [-2 / 3, 1 / 3, -1 / 3], rtol=1e-6)
    assert tape.gradient(loss, adv) is None  # the critic's baseline only weights the gradient


def test_explained_variance_golden():
    # Var[R] = 2.1875, Var[R - V] = 0.1875 -> 1 - 0.1875 / 2.1875 = 0.9142857
    ev = losses.explained_variance(c([1.0, 2.0, 3.0, 4.0]), c([1.0, 2.0, 3.0, 5.0]))
    assert float(ev) == pytest.approx(1 - 0.1875 / 2.1875, abs=1e-6)
    assert float(losses.explained_variance(c([1.0, 2.0, 3.0]), c([1.0, 2.0, 3.0]))) == 1.0
    assert float(losses.explained_variance(c([0.0, 0.0, 0.0]), c([1.0, 2.0, 3.0]))) == 0.0
    assert math.isnan(float(losses.explained_variance(c([1.0, 2.0]), c([3.0, 3.0]))))


def test_normalize_golden():
    out = losses.normalize(c([1.0, 2.0, 3.0, 4.0])).numpy()
    # mean 2.5, std sqrt(1.25)
    np.testing.assert_allclose(out, (np.arange(1, 5) - 2.5) / math.sqrt(1.25), rtol=1e-6)
