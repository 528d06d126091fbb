"""The batched CartPole and Acrobot (envs.classic_vector) against Gymnasium's SyncVectorEnv of
Gymnasium's own envs: the same bits, step by step, for the same seeds and actions."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from envs import make_vec_env
from envs.classic_vector import BatchedAcrobot, BatchedCartPole, batched_classic


def gymnasium_vec(env_id: str, n: int) -> SyncVectorEnv:
    return gym.make_vec(env_id, num_envs=n, vectorization_mode="sync",
                        vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP})


def assert_same_step(ours, theirs, where: str) -> None:
    for k, (a, b) in enumerate(zip(ours[:4], theirs[:4], strict=True)):
        assert a.dtype == b.dtype and a.shape == b.shape, (where, k, a.dtype, b.dtype)
        np.testing.assert_array_equal(a, b, err_msg=f"{where}: output {k}")
    info, ref = ours[4], theirs[4]
    assert sorted(info) == sorted(ref), (where, sorted(info), sorted(ref))
    if "final_obs" in ref:
        np.testing.assert_array_equal(info["_final_obs"], ref["_final_obs"])
        np.testing.assert_array_equal(info["_final_info"], ref["_final_info"])
        assert info["final_info"] == ref["final_info"] == {}
        for i in np.flatnonzero(ref["_final_obs"]):
            np.testing.assert_array_equal(info["final_obs"][i], ref["final_obs"][i])
        assert [o is None for o in info["final_obs"]] == [o is None for o in ref["final_obs"]]


def noisy_controller(env_id: str, obs: np.ndarray, rng) -> np.ndarray:
    """Actions under which some episodes end by the time limit and others by termination."""
    if env_id.startswith("CartPole"):  # balance (pole angle and its velocity), 5% at random
        good = (obs[:, 2] + 0.5 * obs[:, 3] > 0).astype(np.int64)
        n = 2
    else:  # Acrobot: torque along the second joint's velocity swings it up
        good, n = np.where(obs[:, 5] > 0, 2, 0), 3
    # Sub-env 0 acts at random throughout: its episodes end otherwise than the others'.
    good[0] = rng.integers(0, n)
    return np.where(rng.random(len(obs)) < 0.05, rng.integers(0, n, len(obs)), good)


@pytest.mark.parametrize("env_id,n,steps", [("CartPole-v1", 8, 1500), ("CartPole-v0", 3, 600),
                                            ("Acrobot-v1", 4, 1100)])
def test_same_bits_as_gymnasium(env_id, n, steps):
    ours, theirs = batched_classic(env_id, n, {}), gymnasium_vec(env_id, n)
    assert ours.single_observation_space == theirs.single_observation_space
    assert ours.action_space == theirs.action_space
    assert ours.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    o1, _ = ours.reset(seed=7)
    o2, _ = theirs.reset(seed=7)
    np.testing.assert_array_equal(o1, o2)
    rng = np.random.default_rng(0)
    ended = {"terminated": 0, "truncated": 0}
    for t in range(steps):
        actions = noisy_controller(env_id, o2, rng)
        a, b = ours.step(actions), theirs.step(actions)
        o2 = b[0]
        assert_same_step(a, b, f"{env_id} step {t}")
        ended["terminated"] += int(b[2].sum())
        ended["truncated"] += int(b[3].sum())
    assert ended["terminated"] > 0 and ended["truncated"] > 0, ended  # both endings compared


def test_acrobot_derivatives_are_gymnasium_bits():
    """Gymnasium squares single float64s (the C library's pow), which differs from x * x in the
    last bit about once in a thousand: compared on many states, not left to chaotic luck."""
    from envs.classic_vector import _dsdt

    rng = np.random.default_rng(4)
    rows = np.concatenate([rng.uniform(-np.pi, np.pi, (4000, 2)),
                           rng.uniform(-12.0, 12.0, (4000, 1)), rng.uniform(-28.0, 28.0, (4000, 1)),
                           rng.choice([-1.0, 0.0, 1.0], (4000, 1))], axis=1)
    single = gym.make("Acrobot-v1").unwrapped
    expected = np.array([np.asarray(single._dsdt(row)) for row in rows])
    np.testing.assert_array_equal(_dsdt(rows), expected)


def test_reset_seeds_options_and_mask_as_gymnasium():
    ours, theirs = batched_classic("Acrobot-v1", 3, {}), gymnasium_vec("Acrobot-v1", 3)
    for kwargs in ({"seed": [5, 6, 9]}, {}, {"seed": [None, 4, None]}, {"seed": 2, "options": {"low": -0.3, "high": 0.2}},
                   {"options": {"reset_mask": np.array([True, False, True])}}):
        a, b = ours.reset(**kwargs), theirs.reset(**kwargs)
        np.testing.assert_array_equal(a[0], b[0], err_msg=str(kwargs))
        for _ in range(3):
            actions = np.array([0, 1, 2])
            assert_same_step(ours.step(actions), theirs.step(actions), str(kwargs))


def test_unseeded_resets_draw_fresh_seeds():
    env = batched_classic("CartPole-v1", 2, {})
    first, second = env.reset()[0], env.reset()[0]
    assert not np.array_equal(first, second)  # the streams continue; no fixed default seed


def test_make_vec_env_uses_them_only_for_the_registered_envs():
    def base(env):
        while hasattr(env, "env"):
            env = env.env
        return env

    assert isinstance(base(make_vec_env("CartPole-v1", 4, seed=0)), BatchedCartPole)
    # The id is recorded as gym.make_vec records it (agents, evaluations and runners read it).
    assert base(make_vec_env("Acrobot-v1", 3)).spec.id == "Acrobot-v1"
    assert base(make_vec_env("Acrobot-v1", 3)).spec.kwargs["num_envs"] == 3
    assert isinstance(base(make_vec_env("Acrobot-v1", 2, normalize_obs=True)), BatchedAcrobot)
    gymnasiums = [make_vec_env("CartPole-v1", 2, env_kwargs={"sutton_barto_reward": True}),
                  make_vec_env("CartPole-v1", 2, render_mode="rgb_array"),
                  make_vec_env("Pendulum-v1", 2)]
    for env in gymnasiums:
        assert isinstance(base(env), SyncVectorEnv)
    # A time limit other than the registered one, or extra wrappers: Gymnasium's envs.
    assert batched_classic("CartPole-v1", 2, {"max_episode_steps": 50}) is None
    assert batched_classic("MountainCar-v0", 2, {}) is None


def test_episode_statistics_are_the_same_on_either_env():
    """The seeded CartPole episodes of make_vec_env: same statistics through EpisodeStats."""
    from envs import episode_stats
    from envs.episodes import EpisodeStats
    from envs.factory import SeedOnFirstReset

    gymnasiums = EpisodeStats(SeedOnFirstReset(gymnasium_vec("CartPole-v1", 4), 3))
    runs = []
    for env in (make_vec_env("CartPole-v1", 4, seed=3), gymnasiums):
        env.reset()
        rng = np.random.default_rng(1)
        for _ in range(300):
            env.step(rng.integers(0, 2, 4))
        runs.append(episode_stats(env).pop_finished())
    assert runs[0] == runs[1] and len(runs[0]) > 20


def test_bad_actions_and_order_are_clear_errors():
    env = batched_classic("CartPole-v1", 2, {})
    with pytest.raises(gym.error.ResetNeeded):
        env.step(np.array([0, 1]))
    env.reset(seed=0)
    for bad in (np.array([0, 2]), np.array([0]), np.array([0.5, 1.0]), np.array([-1, 0])):
        with pytest.raises(ValueError, match="actions must be 2 integers in \\[0, 2\\)"):
            env.step(bad)
