"""RunningMeanStd and VecNormalize: exact statistics, frozen eval mode, checkpoints."""

import gymnasium as gym
import numpy as np
import pytest
import tensorflow as tf
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from envs import VecNormalize, make_vec_env
from envs.running_stats import RunningMeanStd
from rl_sever.errors import UnsupportedSpaceError

EPS = 1e-8  # VecNormalize / RunningMeanStd.normalize default
C0 = 1e-4  # RunningMeanStd default prior count (mean 0, var 1)


class Countdown(gym.Env):
    """Episodes of exactly `length` steps; step t (1-based) gives reward t and obs [t, 2t+1]."""

    observation_space = spaces.Box(-np.inf, np.inf, (2,), np.float32)
    action_space = spaces.Discrete(2)

    def __init__(self, length: int):
        self.length, self.t = length, 0

    def _obs(self):
        return np.array([self.t, 2 * self.t + 1], np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        return self._obs(), float(self.t), self.t == self.length, False, {}


def countdown_vec(lengths):
    fns = [lambda n=n: Countdown(n) for n in lengths]
    return SyncVectorEnv(fns, autoreset_mode=AutoresetMode.SAME_STEP)


def raw_obs(t):
    return np.stack([t, 2 * t + 1], axis=-1).astype(np.float64)


def prior_stats(samples):
    """Mean/var of `samples` pooled with RunningMeanStd's prior (C0 samples, mean 0, var 1)."""
    x = np.asarray(samples, np.float64)
    total = C0 + len(x)
    mean = x.sum(axis=0) / total
    var = (C0 * (1.0 + mean**2) + ((x - mean) ** 2).sum(axis=0)) / total
    return mean, var


# ---- RunningMeanStd -------------------------------------------------------------------


def test_rms_matches_numpy_over_concatenated_batches():
    rng = np.random.default_rng(0)
    batches = [rng.normal(3.0, 2.0, (n, 3)) for n in (1, 5, 17, 3)]
    rms = RunningMeanStd((3,), epsilon=0.0)
    for b in batches:
        rms.update(b)
    data = np.concatenate(batches)
    np.testing.assert_allclose(rms.mean, data.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(rms.var, data.var(axis=0), rtol=1e-12)
    assert rms.count == len(data)

    prior = RunningMeanStd((3,))
    for b in batches:
        prior.update(b)
    mean, var = prior_stats(data)
    np.testing.assert_allclose(prior.mean, mean, rtol=1e-12)
    np.testing.assert_allclose(prior.var, var, rtol=1e-12)
    assert prior.count == pytest.approx(len(data) + C0, abs=1e-12)


def test_rms_rejects_wrong_shape_and_ignores_empty_batch():
    rms = RunningMeanStd((2,))
    with pytest.raises(ValueError, match="shape"):
        rms.update(np.zeros(2))
    rms.update(np.zeros((0, 2)))
    assert rms.count == C0


def test_rms_checkpoint_round_trip(tmp_path):
    rms = RunningMeanStd((4,), name="obs_rms")
    rms.update(np.random.default_rng(1).normal(5.0, 3.0, (50, 4)))
    rms.sync_to_variables()
    path = tf.train.Checkpoint(rms=rms.trackable()).save(str(tmp_path / "ckpt"))

    restored = RunningMeanStd((4,))
    tf.train.Checkpoint(rms=restored.trackable()).restore(path).assert_consumed()
    restored.sync_from_variables()
    np.testing.assert_array_equal(restored.mean, rms.mean)  # float64: lossless
    np.testing.assert_array_equal(restored.var, rms.var)
    assert restored.count == rms.count
    x = np.random.default_rng(2).normal(5.0, 3.0, (8, 4))
    np.testing.assert_allclose(restored.normalize(x), rms.normalize(x), rtol=1e-5, atol=1e-6)


def test_normalize_tf_equals_normalize_inside_tf_function():
    rms = RunningMeanStd((3,))
    rms.update(np.random.default_rng(3).normal([0.0, 10.0, -4.0], [1.0, 0.1, 5.0], (64, 3)))
    rms.sync_to_variables()
    x = np.random.default_rng(4).normal([0.0, 10.0, -4.0], [3.0, 1.0, 5.0], (32, 3))
    compiled = tf.function(lambda t: rms.normalize_tf(t, clip=2.5, eps=1e-8))
    expected = rms.normalize(x, clip=2.5, eps=1e-8)
    assert np.abs(expected).max() == pytest.approx(2.5)  # the clip is exercised
    got = compiled(tf.constant(x, tf.float32)).numpy()
    assert got.dtype == expected.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


# ---- VecNormalize -----------------------------------------------------------------------


def test_obs_statistics_include_reset_obs_and_normalise_final_obs():
    env = VecNormalize(countdown_vec([3, 4]), normalize_reward=False)
    obs, _ = env.reset(seed=0)
    seen = [raw_obs(np.array([0, 0]))]
    np.testing.assert_allclose(obs, env.normalize_obs(seen[0]))
    for step in range(1, 9):
        obs, _, term, _, info = env.step(np.zeros(2, np.int64))
        t = np.array([(step - 1) % 3 + 1, (step - 1) % 4 + 1])
        t[term] = 0  # SAME_STEP: finished envs already show the next episode's first obs
        seen.append(raw_obs(t))
        mean, var = prior_stats(np.concatenate(seen))
        np.testing.assert_allclose(env.obs_rms.mean, mean, rtol=1e-12)
        np.testing.assert_allclose(env.obs_rms.var, var, rtol=1e-12)
        np.testing.assert_allclose(
            obs, (seen[-1] - mean) / np.sqrt(var + EPS), rtol=1e-6, atol=1e-6
        )
        assert obs.dtype == np.float32
        if term.any():
            for i in np.flatnonzero(info["_final_obs"]):
                final = raw_obs(np.array(3 if i == 0 else 4))
                np.testing.assert_array_equal(info["final_obs"][i], env.normalize_obs(final))
                assert np.abs(info["final_obs"][i] - final).max() > 0.1  # really normalised
        else:
            assert "final_obs" not in info
    assert env.ret_rms is None


def test_reward_scaling_matches_hand_computation():
    gamma = 0.9
    env = VecNormalize(countdown_vec([3, 2]), normalize_obs=False, gamma=gamma)
    obs, _ = env.reset(seed=0)
    np.testing.assert_array_equal(obs, raw_obs(np.array([0, 0])))  # obs untouched
    returns, history = np.zeros(2), []
    for step in range(1, 8):
        _, rew, term, _, _ = env.step(np.zeros(2, np.int64))
        raw = np.array([(step - 1) % 3 + 1, (step - 1) % 2 + 1], np.float64)
        returns = returns * gamma + raw
        history.extend(returns)
        _, var = prior_stats(history)
        # step 1: both returns equal, so the variance is ~C0-sized and the clip at 10 bites
        expected = np.clip(raw / np.sqrt(var + EPS), -10.0, 10.0)
        np.testing.assert_allclose(rew, expected, rtol=1e-12)
        assert (rew == 10.0).all() == (step == 1)
        returns[term] = 0.0
    np.testing.assert_allclose(env.returns, returns)


def test_reward_clip_value_is_used():
    env = VecNormalize(countdown_vec([5]), normalize_obs=False, clip_reward=1.0)
    env.reset()
    rewards = [float(env.step(np.zeros(1, np.int64))[1][0]) for _ in range(10)]
    assert max(rewards) == 1.0 and rewards.count(1.0) == 6 and min(rewards) < 0.5


def test_training_false_freezes_statistics_but_still_normalises():
    env = VecNormalize(countdown_vec([3, 5]))
    env.reset(seed=0)
    for _ in range(7):
        env.step(np.zeros(2, np.int64))
    env.training = False
    frozen = [(r.mean.copy(), r.var.copy(), r.count) for r in (env.obs_rms, env.ret_rms)]
    frozen_returns = env.returns.copy()
    obs, _ = env.reset()
    np.testing.assert_allclose(obs, env.normalize_obs(raw_obs(np.array([0, 0]))))
    for step in range(1, 10):
        obs, rew, term, _, _ = env.step(np.zeros(2, np.int64))
        t = np.array([(step - 1) % 3 + 1, (step - 1) % 5 + 1])
        np.testing.assert_allclose(rew, t / np.sqrt(env.ret_rms.var + EPS))
        t[term] = 0
        np.testing.assert_allclose(obs, env.normalize_obs(raw_obs(t)))
    for rms, (mean, var, count) in zip((env.obs_rms, env.ret_rms), frozen, strict=True):
        np.testing.assert_array_equal(rms.mean, mean)
        np.testing.assert_array_equal(rms.var, var)
        assert rms.count == count
    assert frozen_returns.any() and not env.returns.any()  # reset zeroed, never accumulated


def test_checkpoint_round_trip(tmp_path):
    env = make_vec_env("CartPole-v1", 2, seed=0, normalize_obs=True, normalize_reward=True)
    norm = env  # VecNormalize is the outermost wrapper
    env.reset()
    for _ in range(50):
        env.step(env.action_space.sample())
    norm.before_save()
    path = tf.train.Checkpoint(normalizer=norm.trackable()).save(str(tmp_path / "ckpt"))

    fresh = make_vec_env("CartPole-v1", 2, seed=1, normalize_obs=True, normalize_reward=True)
    tf.train.Checkpoint(normalizer=fresh.trackable()).restore(path).assert_consumed()
    fresh.after_restore()
    for a, b in ((norm.obs_rms, fresh.obs_rms), (norm.ret_rms, fresh.ret_rms)):
        np.testing.assert_array_equal(b.mean, a.mean)  # float64: lossless
        np.testing.assert_array_equal(b.var, a.var)
        assert b.count == a.count
    x = np.random.default_rng(0).normal(0.0, 0.5, (16, 4))
    np.testing.assert_array_equal(fresh.normalize_obs(x), norm.normalize_obs(x))
    env.close()
    fresh.close()


def test_image_observations_are_refused():
    class Image(Countdown):
        observation_space = spaces.Box(0, 255, (8, 8, 3), np.uint8)

    vec = SyncVectorEnv([lambda: Image(3)], autoreset_mode=AutoresetMode.SAME_STEP)
    with pytest.raises(UnsupportedSpaceError, match="normalize_obs"):
        VecNormalize(vec)
    assert VecNormalize(vec, normalize_obs=False).obs_rms is None
