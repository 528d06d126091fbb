"""The Gymnasium VectorEnv view over TF-native envs behaves like gym.make_vec(..., SAME_STEP)."""

import gymnasium as gym
import numpy as np
import pytest
import tensorflow as tf
from gymnasium.vector import AutoresetMode

from envs import tfnative

NAMES = tfnative.names()


def _gym_vec(name, n):
    return gym.make_vec(
        name,
        num_envs=n,
        vectorization_mode="sync",
        vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP},
    )


@pytest.mark.parametrize("name", NAMES)
def test_spaces_and_metadata_match_gymnasium(name):
    view, ref = tfnative.make_vec_env(name, 3, seed=0), _gym_vec(name, 3)
    assert isinstance(view, gym.vector.VectorEnv)
    assert view.num_envs == 3
    assert view.single_observation_space == ref.single_observation_space
    assert view.single_action_space == ref.single_action_space
    assert view.observation_space == ref.observation_space
    assert view.action_space == ref.action_space
    assert view.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    assert view.spec.id == name and view.spec.max_episode_steps == ref.spec.max_episode_steps


@pytest.mark.parametrize("name", NAMES)
def test_random_policy_outputs_like_gymnasium(name):
    """Shapes, dtypes and infos of reset/step equal the sync SAME_STEP vector env's."""
    n = 4
    view, ref = tfnative.make_vec_env(name, n, seed=1), _gym_vec(name, n)
    view.action_space.seed(0)
    obs, info = view.reset(seed=0)
    ref_obs, ref_info = ref.reset(seed=0)
    assert info == ref_info == {}
    assert obs.dtype == ref_obs.dtype and obs.shape == ref_obs.shape
    assert view.observation_space.contains(obs)
    ref_step = ref.step(ref.action_space.sample())
    ended = 0
    for _ in range(view.env.max_episode_steps + 1):
        obs, reward, terminated, truncated, info = view.step(view.action_space.sample())
        for got, want in zip((obs, reward, terminated, truncated), ref_step[:4]):
            assert got.dtype == want.dtype and got.shape == want.shape
        assert view.observation_space.contains(obs)
        done = terminated | truncated
        if done.any():
            ended += 1
            assert set(info) == {"final_obs", "_final_obs", "final_info", "_final_info"}
            assert info["final_obs"].dtype == object and info["final_info"] == {}
            np.testing.assert_array_equal(info["_final_obs"], done)
            np.testing.assert_array_equal(info["_final_info"], done)
            for i in range(n):
                if done[i]:
                    assert view.single_observation_space.contains(info["final_obs"][i])
                else:
                    assert info["final_obs"][i] is None
        else:
            assert info == {}
    assert ended > 0
    # One compiled call per step, traced once.
    assert view._step_fn.experimental_get_tracing_count() == 1
    assert view._reset_fn.experimental_get_tracing_count() == 1


def test_final_obs_is_the_true_last_obs():
    """SAME_STEP: obs is the next episode's first obs; final_obs is what a plain step returns."""
    n = 8
    view = tfnative.make_vec_env("CartPole-v1", n, seed=3)
    env = view.env
    view.reset(seed=3)
    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(200):
        before = view._state
        actions = rng.integers(0, 2, n)
        obs, reward, terminated, _, info = view.step(actions)
        _, plain_obs, plain_reward, plain_term, _ = env.step(before, tf.constant(actions))
        np.testing.assert_array_equal(terminated, plain_term.numpy())
        np.testing.assert_array_equal(reward, plain_reward.numpy())
        for i in np.flatnonzero(terminated):
            final = info["final_obs"][i]
            np.testing.assert_array_equal(final, plain_obs.numpy()[i])
            assert abs(final[0]) > 2.4 or abs(final[2]) > 12 * 2 * np.pi / 360
            assert np.abs(obs[i]).max() <= 0.05  # a fresh start state
            assert view._state.t.numpy()[i] == 0
            checked += 1
        np.testing.assert_array_equal(obs[~terminated], plain_obs.numpy()[~terminated])
    assert checked >= 5


def test_truncation_at_time_limit():
    view = tfnative.make_vec_env("Pendulum-v1", 2, seed=0)
    obs, _ = view.reset(seed=0)
    for k in range(1, 201):
        obs, _, terminated, truncated, info = view.step(np.zeros((2, 1), np.float32))
        assert not terminated.any()
        assert truncated.all() == (k == 200)
    assert info["_final_obs"].all()
    last = np.stack(info["final_obs"])
    assert not np.array_equal(last, obs)
    np.testing.assert_array_equal(view._state.t.numpy(), [0, 0])
    obs, _, _, truncated, info = view.step(np.zeros((2, 1), np.float32))
    assert not truncated.any() and info == {}


@pytest.mark.parametrize("name", ["CartPole-v1", "Pendulum-v1"])
def test_seeded_resets_are_deterministic(name):
    view = tfnative.make_vec_env(name, 5)
    first, _ = view.reset(seed=123)
    view.step(view.action_space.sample())
    again, _ = view.reset(seed=123)
    other, _ = view.reset(seed=124)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert len({tuple(row) for row in first}) == 5  # the envs differ from each other

    # Same constructor seed and actions -> same trajectories, autoresets included.
    a, b = tfnative.make_vec_env(name, 5, seed=9), tfnative.make_vec_env(name, 5, seed=9)
    np.testing.assert_array_equal(a.reset()[0], b.reset()[0])
    a.action_space.seed(0)
    for _ in range(60):
        actions = a.action_space.sample()
        out_a, out_b = a.step(actions), b.step(actions)
        for x, y in zip(out_a[:4], out_b[:4]):
            np.testing.assert_array_equal(x, y)
    # reset() without a seed continues the stream rather than repeating it.
    assert not np.array_equal(a.reset()[0], first)


def test_invalid_use_raises():
    view = tfnative.make_vec_env("CartPole-v1", 2, seed=0)
    with pytest.raises(RuntimeError):
        view.step(np.array([0, 1]))
    view.reset()
    with pytest.raises(ValueError):
        view.step(np.array([0, 1, 1]))
    with pytest.raises(ValueError):
        view.step(np.array([0, 2]))
    with pytest.raises(ValueError):
        view.reset(options={"low": -0.1})


def test_works_with_gymnasium_vector_wrappers():
    view = gym.wrappers.vector.RecordEpisodeStatistics(tfnative.make_vec_env("CartPole-v1", 4))
    view.reset(seed=0)
    for _ in range(100):
        view.step(view.action_space.sample())
    assert len(view.return_queue) > 0
    assert all(r == length for r, length in zip(view.return_queue, view.length_queue))


def test_jit_compiled_view_matches_graph_view():
    graph, xla = (
        tfnative.make_vec_env("Acrobot-v1", 3, seed=4, jit_compile=jit) for jit in (False, True)
    )
    np.testing.assert_array_equal(graph.reset()[0], xla.reset()[0])
    rng = np.random.default_rng(0)
    for _ in range(50):
        actions = rng.integers(0, 3, 3)
        (obs_g, rew_g, term_g, _, _), (obs_x, rew_x, term_x, _, _) = (
            graph.step(actions),
            xla.step(actions),
        )
        # XLA may fuse multiply-adds, so only closeness is promised.
        np.testing.assert_allclose(obs_x, obs_g, rtol=0, atol=1e-5)
        np.testing.assert_array_equal(term_x, term_g)
        np.testing.assert_array_equal(rew_x, rew_g)


def test_the_view_traces_its_step_and_reset_on_first_use_only():
    """An agent training in-graph never steps the view: building one traces nothing."""
    from tests.helpers import tiny_agent

    agent = tiny_agent("ppo", "tf:CartPole-v1", eval_episodes=0)
    agent.learn(64, progress=False)
    view = agent.env
    while not isinstance(view, tfnative.TFNativeVectorEnv):
        view = view.env
    assert (view._reset_fn.experimental_get_tracing_count(),
            view._step_fn.experimental_get_tracing_count()) == (0, 0)
    agent.close()
    view = tfnative.make_vec_env("CartPole-v1", 2, seed=0)
    view.reset(seed=0)
    assert (view._reset_fn.experimental_get_tracing_count(),
            view._step_fn.experimental_get_tracing_count()) == (1, 0)
    view.step(np.zeros(2, np.int64)), view.step(np.ones(2, np.int64))
    assert view._step_fn.experimental_get_tracing_count() == 1
