"""The on-policy action distributions (rl_sever.nn.distributions), written in TensorFlow ops,
against tensorflow-probability's Categorical and MultivariateNormalDiag: the same
log-probabilities, entropies, modes and gradients; samples from the same distribution,
reproducible from a seed; and a PPO run that never imports tensorflow-probability."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from rl_sever.config.spaces import ActionSpec
from rl_sever.nn.distributions import MASKED_LOGIT, ActionHead, Categorical, DiagGaussian

tfd = tfp.distributions
RNG = np.random.default_rng(0)


def close(a, b):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-6, atol=2e-6)


def test_categorical_equals_tfp_with_masked_logits_and_gradients():
    logits = tf.Variable(RNG.normal(size=(64, 5)).astype(np.float32) * 3)
    mask = RNG.random((64, 5)) > 0.3
    mask[:, 0] = True
    actions = tf.constant(np.argmax(np.where(mask, RNG.random((64, 5)), -1), -1), tf.int32)
    with tf.GradientTape(persistent=True) as tape:
        masked = tf.where(mask, logits, MASKED_LOGIT)
        ours, theirs = Categorical(masked), tfd.Categorical(logits=masked)
        values = [(ours.log_prob(actions), theirs.log_prob(actions)),
                  (ours.entropy(), theirs.entropy())]
    for a, b in values:
        close(a, b)
        close(tape.gradient(a, logits), tape.gradient(b, logits))
    np.testing.assert_array_equal(ours.mode(), theirs.mode())
    assert np.isfinite(values[1][0].numpy()).all()  # 0 * MASKED_LOGIT, not NaN


def test_categorical_broadcasts_actions_and_logits_as_tfp_does():
    logits = tf.constant(RNG.normal(size=(4, 3)).astype(np.float32))
    for actions in (tf.constant(2), tf.constant([[0], [1]])):  # one action; [2, 1] against [4]
        close(Categorical(logits).log_prob(actions), tfd.Categorical(logits=logits).log_prob(actions))
    fn = tf.function(lambda lg, a: Categorical(lg).log_prob(a), input_signature=[
        tf.TensorSpec([None, 3]), tf.TensorSpec([None], tf.int32)])  # shapes known at run time
    close(fn(logits[:1], tf.constant([0, 1, 2])),
          tfd.Categorical(logits=logits[:1]).log_prob(tf.constant([0, 1, 2])))


def test_diag_gaussian_equals_tfp_with_gradients():
    loc = tf.Variable(RNG.normal(size=(64, 3)).astype(np.float32))
    log_std = tf.Variable(RNG.normal(size=(3,)).astype(np.float32) * 0.5)
    x = tf.constant(RNG.normal(size=(64, 3)).astype(np.float32) * 2)
    with tf.GradientTape(persistent=True) as tape:
        scale = tf.exp(log_std) * tf.ones_like(loc)
        ours, theirs = DiagGaussian(loc, scale), tfd.MultivariateNormalDiag(loc, scale)
        values = [(ours.log_prob(x), theirs.log_prob(x)), (ours.entropy(), theirs.entropy())]
    for a, b in values:
        close(a, b)
        for var in (loc, log_std):
            ga, gb = tape.gradient(a, var), tape.gradient(b, var)
            if ga is None or gb is None:  # an entropy does not depend on the mean
                assert var is loc and a is values[1][0]
                close(0 if ga is None else ga, 0 if gb is None else gb)
            else:
                close(ga, gb)


def test_samples_follow_the_distribution_and_repeat_from_a_seed():
    seed = tf.constant([3, 7], tf.int32)
    probs = np.array([0.1, 0.2, 0.7], np.float32)
    head = ActionHead(ActionSpec(kind="discrete", shape=(), n=3))
    dist = head.distribution(tf.math.log(tf.tile(probs[None], [20_000, 1])))
    draws = head.sample(dist, seed).numpy()
    assert draws.dtype == np.int32 and draws.shape == (20_000,)
    np.testing.assert_allclose(np.bincount(draws, minlength=3) / draws.size, probs, atol=0.015)
    np.testing.assert_array_equal(draws, head.sample(dist, seed).numpy())
    assert (draws != head.sample(dist, seed + 1).numpy()).any()
    gauss = DiagGaussian(tf.fill([20_000, 2], 1.5), tf.fill([20_000, 2], 0.5))
    x = gauss.sample(seed).numpy()
    np.testing.assert_allclose(x.mean(0), [1.5, 1.5], atol=0.02)
    np.testing.assert_allclose(x.std(0), [0.5, 0.5], atol=0.02)


def test_a_ppo_run_does_not_import_tensorflow_probability(tmp_path):
    code = ("import sys; from agents.ppo import PPO; "
            "a = PPO('CartPole-v1', dict(n_envs=2, n_steps=16, batch_size=16, n_epochs=1)); "
            "a.learn(32, progress=False); a.predict(a.env.reset(seed=0)[0]); "
            "print('tensorflow_probability' in sys.modules)")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "False"
