"""WorkerPoolVectorEnv (vectorization=async with n_workers): parity with the sync vector env,
SAME_STEP final observations, episode stats, shutdown, worker errors, config checks, PPO."""

from __future__ import annotations

import multiprocessing as mp
import os

import gymnasium as gym
import numpy as np
import pytest

from envs import episode_stats, make_vec_env
from envs.autoreset import reached_observations
from envs.worker_pool import EnvWorkerError, WorkerPoolVectorEnv, split_envs
from rl_sever.config.run import RunConfig
from rl_sever.errors import ConfigError
from tests.helpers import TINY_MD_HORIZON, TINY_MD_ID, make_agent

BOOM_ID = "RlSeverTest/BoomAfter3-v0"


class BoomEnv(gym.Env):
    """CartPole-shaped env whose step raises on its third call."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self):
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(4, np.float32), {}

    def step(self, action):
        self.t += 1
        if self.t == 3:
            raise ValueError("boom at step 3")
        return np.zeros(4, np.float32), 0.0, False, False, {}


if BOOM_ID not in gym.registry:
    gym.register(BOOM_ID, entry_point=BoomEnv)


def pool(env_id="CartPole-v1", n_envs=4, n_workers=2, **kwargs):
    return make_vec_env(env_id, n_envs, vectorization="async", n_workers=n_workers, **kwargs)


def random_steps(env, steps, seed=0):
    """Every step's (obs, reward, terminated, truncated, final-obs mask, final obs) after a reset."""
    rng = np.random.default_rng(seed)
    out = [env.reset()[0]]
    for _ in range(steps):
        obs, rew, term, trunc, info = env.step(rng.integers(0, 2, env.num_envs))
        mask = info.get("_final_obs", np.zeros(env.num_envs, bool))
        finals = [np.asarray(f) for f in info["final_obs"][mask]] if mask.any() else []
        out.append((obs, rew, term, trunc, mask, finals))
    return out


def assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        if isinstance(x, tuple):
            assert_same(x, y)
        elif isinstance(x, list):
            assert len(x) == len(y) and all(np.array_equal(p, q) for p, q in zip(x, y))
        else:
            assert x.dtype == y.dtype and np.array_equal(x, y)


def test_split_envs_is_contiguous_and_balanced():
    assert split_envs(8, 2) == [range(0, 4), range(4, 8)]
    shares = split_envs(5, 3)
    assert [len(s) for s in shares] in ([2, 1, 2], [1, 2, 2], [2, 2, 1])
    assert [i for s in shares for i in s] == list(range(5))


@pytest.mark.parametrize("n_envs, n_workers", [(4, 2), (5, 2)])
def test_same_trajectories_as_sync(n_envs, n_workers):
    sync = make_vec_env("CartPole-v1", n_envs, seed=3)
    env = pool(n_envs=n_envs, n_workers=n_workers, seed=3)
    try:
        assert env.observation_space == sync.observation_space
        assert env.action_space == sync.action_space
        a, b = random_steps(env, 200), random_steps(sync, 200)
        assert sum(int(step[4].sum()) for step in b[1:]) > 0  # some episodes ended
        assert_same(a, b)
    finally:
        env.close()
        sync.close()


def test_episode_end_gives_true_final_obs():
    env = pool(TINY_MD_ID, n_envs=4, n_workers=2, seed=0)
    try:
        obs, _ = env.reset()
        lengths, ends = np.zeros(4, int), 0
        rng = np.random.default_rng(1)
        for _ in range(40):
            obs, _, term, trunc, info = env.step(rng.integers(0, [3, 2], (4, 2)))
            lengths += 1
            done = term | trunc
            np.testing.assert_array_equal(info.get("_final_obs", np.zeros(4, bool)), done)
            reached = reached_observations(obs, info)
            for i in np.flatnonzero(done):
                # The observation's first entry is the step counter / horizon.
                assert info["final_obs"][i][0] == pytest.approx(lengths[i] / TINY_MD_HORIZON)
                assert reached[i][0] == pytest.approx(lengths[i] / TINY_MD_HORIZON)
                assert obs[i][0] == 0.0  # the next episode's first observation
                assert trunc[i] == (lengths[i] == TINY_MD_HORIZON)  # the TimeLimit's
                ends += 1
            lengths[done] = 0
        assert ends > 4
    finally:
        env.close()


def test_episode_stats_match_sync():
    sync = make_vec_env("CartPole-v1", 4, seed=5)
    env = pool(seed=5)
    try:
        random_steps(env, 150)
        random_steps(sync, 150)
        finished = episode_stats(env).pop_finished()
        assert finished and finished == episode_stats(sync).pop_finished()
        assert episode_stats(env).mean_return() == episode_stats(sync).mean_return()
    finally:
        env.close()
        sync.close()


def _workers(env) -> list:
    while not isinstance(env, WorkerPoolVectorEnv):
        env = env.env
    return env.processes


def _gone(process) -> bool:
    """Joined and reaped: not alive, exit code known, no /proc entry (no zombie)."""
    return (
        not process.is_alive()
        and process.exitcode is not None
        and not os.path.exists(f"/proc/{process.pid}")
    )


def test_close_leaves_no_live_children():
    env = pool(n_envs=4, n_workers=2)
    workers = _workers(env)
    assert len(workers) == 2 and all(p.is_alive() for p in workers)
    env.reset(seed=0)
    env.close()
    assert all(_gone(p) for p in workers)
    assert not set(workers) & set(mp.active_children())
    with pytest.raises(gym.error.ClosedEnvironmentError):
        env.step(np.zeros(4, np.int64))
    env.close()  # idempotent


def test_worker_error_names_the_env_and_shuts_down():
    env = pool(BOOM_ID, n_envs=4, n_workers=2)
    workers = _workers(env)
    env.reset(seed=0)
    env.step(np.zeros(4, np.int64))
    env.step(np.zeros(4, np.int64))
    with pytest.raises(
        EnvWorkerError,
        match=rf"env 0 \({BOOM_ID}\) in worker 0 raised "
        r"ValueError: boom at step 3 during step",
    ):
        env.step(np.zeros(4, np.int64))
    assert all(_gone(p) for p in workers)


@pytest.mark.parametrize(
    "n_envs, vectorization, n_workers, message",
    [
        (2, "async", 3, "more than n_envs"),
        (4, "sync", 2, "needs vectorization=async"),
        (4, "async", -1, "non-negative integer"),
    ],
)
def test_bad_n_workers_is_a_config_error(n_envs, vectorization, n_workers, message):
    with pytest.raises(ConfigError, match=message):
        RunConfig(n_envs=n_envs, vectorization=vectorization, n_workers=n_workers).validate()
    with pytest.raises(ConfigError, match=message):
        make_vec_env("CartPole-v1", n_envs, vectorization=vectorization, n_workers=n_workers)


def test_ppo_smoke_with_worker_pool(tmp_path):
    agent = make_agent("ppo", overrides={"vectorization": "async", "n_workers": 2}, logdir=tmp_path)
    workers = _workers(agent.env)
    try:
        agent.learn(progress=False)
        assert int(agent.global_step.numpy()) == agent.config.total_steps
    finally:
        agent.close()
    assert all(_gone(p) for p in workers)
