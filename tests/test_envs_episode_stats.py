"""EpisodeStats: raw per-env returns and lengths under Gymnasium's autoreset modes."""

import math

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from envs import EpisodeStats, episode_stats, make_vec_env


class Countdown(gym.Env):
    """Episodes of exactly `length` steps; step t (1-based) gives reward t and obs [t, 2t+1]."""

    observation_space = spaces.Box(-np.inf, np.inf, (2,), np.float32)
    action_space = spaces.Discrete(2)

    def __init__(self, length: int, truncate: bool = False):
        self.length, self.truncate, self.t = length, truncate, 0

    def _obs(self):
        return np.array([self.t, 2 * self.t + 1], np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        end = self.t == self.length
        return self._obs(), float(self.t), end and not self.truncate, end and self.truncate, {}


def countdown_vec(lengths, mode=AutoresetMode.SAME_STEP, truncate=()):
    fns = [lambda n=n, i=i: Countdown(n, i in truncate) for i, n in enumerate(lengths)]
    return SyncVectorEnv(fns, autoreset_mode=mode)


def episode(length):
    return (float(length * (length + 1) // 2), length)


def test_same_step_counts_episodes_ending_together():
    # envs 0 and 1 end on the same steps; env 1 by truncation, env 2 on its own schedule
    env = EpisodeStats(countdown_vec([3, 3, 5], truncate=(1,)))
    env.reset(seed=0)
    assert math.isnan(env.mean_return()) and math.isnan(env.mean_length())
    finished_at = {}
    for step in range(1, 16):
        env.step(np.zeros(3, np.int64))
        finished_at[step] = env.pop_finished()
    for step, eps in finished_at.items():
        expected = [episode(3)] * 2 * (step % 3 == 0) + [episode(5)] * (step % 5 == 0)
        assert eps == expected, step
    assert env.total_episodes == 5 + 5 + 3
    assert env.mean_return() == pytest.approx((10 * 6 + 3 * 15) / 13)
    assert env.mean_length() == pytest.approx((10 * 3 + 3 * 5) / 13)
    assert env.pop_finished() == []


def test_next_step_mode_skips_the_reset_step():
    env = EpisodeStats(countdown_vec([2, 3], mode=AutoresetMode.NEXT_STEP))
    env.reset(seed=0)
    finished = []
    for _ in range(12):  # env 0: 4 episodes of 2 (+1 reset step each), env 1: 3 of 3
        env.step(np.zeros(2, np.int64))
        finished += env.pop_finished()
    assert sorted(finished) == [episode(2)] * 4 + [episode(3)] * 3


def test_reset_drops_the_episode_in_progress_and_window_is_bounded():
    env = EpisodeStats(countdown_vec([3]), window=2)
    env.reset()
    env.step(np.zeros(1, np.int64))
    env.reset()
    for _ in range(3 * 3):
        env.step(np.zeros(1, np.int64))
    assert env.pop_finished() == [episode(3)] * 3
    assert env.mean_length() == 3.0 and len(env._recent) == 2


def test_cartpole_matches_manual_tally():
    n = 8
    env = make_vec_env("CartPole-v1", n, seed=3)
    stats = episode_stats(env)
    env.reset()
    returns, lengths, manual = np.zeros(n), np.zeros(n, int), []
    most_at_once = 0
    for _ in range(400):
        _, rew, term, trunc, info = env.step(env.action_space.sample())
        returns += rew
        lengths += 1
        done = term | trunc
        np.testing.assert_array_equal(done, info.get("_final_obs", np.zeros(n, bool)))
        most_at_once = max(most_at_once, int(done.sum()))
        for i in np.flatnonzero(done):
            manual.append((float(returns[i]), int(lengths[i])))
        returns[done], lengths[done] = 0, 0
    assert most_at_once >= 2  # several episodes ended at the same step
    assert stats.pop_finished() == manual
    assert stats.total_episodes == len(manual) > 100
    assert all(r == n_steps for r, n_steps in manual)  # CartPole pays 1 per step
    assert stats.mean_return() == pytest.approx(np.mean([r for r, _ in manual[-100:]]))
    env.close()


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "CartPole-v1"])  # Gymnasium's envs, batched
def test_a_masked_reset_keeps_the_other_episodes(env_id):
    # Gymnasium's SyncVectorEnv pops `reset_mask` from the options: the wrappers read it first.
    env = make_vec_env(env_id, 3, seed=0, normalize_reward=True)
    env.reset()
    for _ in range(5):
        env.step(np.zeros(3, dtype=env.action_space.dtype).reshape(env.action_space.shape))
    stats = episode_stats(env)
    env.reset(options={"reset_mask": np.array([True, False, False])})
    assert stats._lengths.tolist() == [0, 5, 5]
