"""make_vec_env / make_env: seeding, observation preprocessing, wrappers, errors."""

import copy
import sys
import types

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.vector import AutoresetMode

from envs import (
    EpisodeStats,
    VecNormalize,
    episode_stats,
    find_normalizer,
    make_env,
    make_vec_env,
)
from rl_sever.errors import ConfigError, UnknownNameError, UnsupportedSpaceError

OBS_SPACES = {
    "dict": spaces.Dict(
        {"pos": spaces.Box(-1.0, 1.0, (2,), np.float64), "mode": spaces.Discrete(3)}
    ),
    "tuple": spaces.Tuple((spaces.Box(0.0, 1.0, (2,), np.float32), spaces.Discrete(2))),
    "matrix": spaces.Box(-1.0, 1.0, (2, 3), np.float32),
    "float64": spaces.Box(-1.0, 1.0, (3,), np.float64),
    "image": spaces.Box(0, 255, (6, 5, 3), np.uint8),
    "discrete": spaces.Discrete(4),
}


class ShapeEnv(gym.Env):
    """Random observations from one of OBS_SPACES; episodes of 4 steps."""

    def __init__(self, kind: str = "dict"):
        self.observation_space = copy.deepcopy(OBS_SPACES[kind])
        self.action_space = spaces.Discrete(2)
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.observation_space.seed(int(self.np_random.integers(2**31)))
        self.t = 0
        return self.observation_space.sample(), {}

    def step(self, action):
        self.t += 1
        return self.observation_space.sample(), 1.0, self.t == 4, False, {}


def _missing_box2d(**kwargs):
    raise gym.error.DependencyNotInstalled(
        'Box2D is not installed, run `pip install "gymnasium[box2d]"`'
    )


for _id, _entry in [
    ("RlSeverTest/Shapes-v0", ShapeEnv),
    ("RlSeverTest/NoBox2D-v0", _missing_box2d),
]:
    if _id not in gym.registry:
        gym.register(_id, entry_point=_entry)


def rollout(env, steps, actions_seed=0):
    rng = np.random.default_rng(actions_seed)
    obs, _ = env.reset()
    out = [obs]
    for _ in range(steps):
        obs, rew, term, trunc, _ = env.step(rng.integers(0, 2, env.num_envs))
        out += [obs, rew, term, trunc]
    return out


def assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


# ---- seeding ----------------------------------------------------------------------------


def test_same_seed_same_trajectories_and_seed_plus_i_per_env():
    a = make_vec_env("CartPole-v1", 3, seed=7)
    b = make_vec_env("CartPole-v1", 3, seed=7)
    np.testing.assert_array_equal(a.action_space.sample(), b.action_space.sample())
    traj = rollout(a, 60)
    assert_same(traj, rollout(b, 60))
    assert np.asarray(traj[3::4]).any()  # episodes ended, so resets were compared too

    first = traj[0]
    for i in range(3):
        single, _ = gym.make("CartPole-v1").reset(seed=7 + i)
        np.testing.assert_array_equal(first[i], single)
    explicit, _ = make_vec_env("CartPole-v1", 3).reset(seed=7)
    np.testing.assert_array_equal(first, explicit)
    other, _ = make_vec_env("CartPole-v1", 3, seed=8).reset()
    assert not np.array_equal(first, other)
    # the seed applies once; later resets continue the random streams
    assert not np.array_equal(a.reset()[0], first)


def test_make_env_seeding_and_preprocessing():
    env = make_env("RlSeverTest/Shapes-v0", seed=3)
    assert env.observation_space.shape == (5,) and env.observation_space.dtype == np.float32
    first, _ = env.reset()
    assert first.dtype == np.float32 and first.shape == (5,)
    again = make_env("RlSeverTest/Shapes-v0", seed=3)
    np.testing.assert_array_equal(again.reset()[0], first)
    assert env.action_space.sample() == again.action_space.sample()
    assert not np.array_equal(env.reset()[0], first)


# ---- observation preprocessing ----------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "shape", "dtype"),
    [
        ("dict", (5,), np.float32),  # Discrete(3) one-hot (3) + Box (2)
        ("tuple", (4,), np.float32),
        ("matrix", (6,), np.float32),
        ("float64", (3,), np.float32),
        ("image", (6, 5, 3), np.uint8),
        ("discrete", (), np.int64),
    ],
)
def test_observation_preprocessing(kind, shape, dtype):
    env = make_vec_env("RlSeverTest/Shapes-v0", 2, seed=0, env_kwargs={"kind": kind})
    assert env.single_observation_space.shape == shape
    assert env.single_observation_space.dtype == dtype
    obs, _ = env.reset()
    for _ in range(4):  # through an episode end: final_obs uses the same preprocessing
        obs, _, term, _, info = env.step(np.zeros(2, np.int64))
    assert term.all()
    assert obs.shape == (2, *shape) and obs.dtype == dtype
    assert info["final_obs"][0].shape == shape and info["final_obs"][0].dtype == dtype
    if kind == "dict":  # keys are flattened in sorted order: mode (one-hot), then pos
        assert set(np.unique(obs[:, :3])) <= {0.0, 1.0} and (obs[:, :3].sum(axis=1) == 1).all()


# ---- wrappers ---------------------------------------------------------------------------


def test_wrapper_order_and_lookup():
    plain = make_vec_env("CartPole-v1", 2)
    assert isinstance(plain, EpisodeStats) and find_normalizer(plain) is None
    assert episode_stats(plain) is plain

    env = make_vec_env("CartPole-v1", 2, seed=0, normalize_reward=True)
    norm = find_normalizer(env)
    assert isinstance(norm, VecNormalize) and norm is env
    assert norm.obs_rms is None and norm.ret_rms is not None
    assert isinstance(norm.env, EpisodeStats) and episode_stats(env) is norm.env
    assert env.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    with pytest.raises(ValueError, match="EpisodeStats"):
        episode_stats(gym.make_vec("CartPole-v1", 1))


def test_image_env_with_normalize_obs_is_refused():
    with pytest.raises(UnsupportedSpaceError):
        make_vec_env("RlSeverTest/Shapes-v0", 1, normalize_obs=True, env_kwargs={"kind": "image"})


def test_async_matches_sync():
    sync = make_vec_env("CartPole-v1", 2, seed=5)
    async_env = make_vec_env("CartPole-v1", 2, seed=5, vectorization="async")
    try:
        assert_same(rollout(sync, 40), rollout(async_env, 40))
        assert episode_stats(async_env).pop_finished() == episode_stats(sync).pop_finished()
    finally:
        async_env.close()
        sync.close()


def test_lunar_lander_with_normalisation():
    env = make_vec_env(
        "LunarLander-v3",
        2,
        seed=0,
        normalize_obs=True,
        normalize_reward=True,
        env_kwargs={"continuous": True},
    )
    assert env.single_action_space.shape == (2,)
    obs, _ = env.reset()
    for _ in range(100):
        obs, rew, *_ = env.step(env.action_space.sample())
    assert obs.shape == (2, 8) and obs.dtype == np.float32
    assert np.isfinite(obs).all() and np.isfinite(rew).all()
    assert env.obs_rms.count == pytest.approx(2 * 101, abs=1e-3)
    env.close()


# ---- TF-native ids ----------------------------------------------------------------------


def test_tf_prefix_without_tfnative_module(monkeypatch):
    monkeypatch.setitem(sys.modules, "envs.tfnative", None)  # makes the import fail
    with pytest.raises(UnknownNameError, match="TF-native environments are unavailable"):
        make_vec_env("tf:CartPole-v1", 2)


def test_tf_prefix_dispatches_and_wraps(monkeypatch):
    calls = []

    def fake_make_vec_env(name, n_envs, *, seed=None):
        calls.append((name, n_envs, seed))
        return gym.make_vec(
            "CartPole-v1",
            n_envs,
            vectorization_mode="sync",
            vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP},
        )

    fake = types.ModuleType("envs.tfnative")
    fake.make_vec_env = fake_make_vec_env
    monkeypatch.setitem(sys.modules, "envs.tfnative", fake)
    env = make_vec_env("tf:CartPole", 3, seed=11, normalize_obs=True)
    assert calls == [("CartPole", 3, 11)]
    assert isinstance(env, VecNormalize) and isinstance(env.env, EpisodeStats)


# ---- errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env_id", "suggestion"),
    [("CartPol-v1", "CartPole-v1"), ("CartPole-v9", "CartPole-v1"), ("cartpole-v1", "CartPole")],
)
def test_unknown_env_id_suggests_close_names(env_id, suggestion):
    with pytest.raises(UnknownNameError, match=f"Did you mean: {suggestion}"):
        make_vec_env(env_id)
    with pytest.raises(UnknownNameError, match=env_id):
        make_env(env_id)


@pytest.mark.filterwarnings("ignore:.*latest versioned environment")
def test_unversioned_id_is_accepted():
    assert make_vec_env("CartPole", 1).spec.id == "CartPole-v1"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_envs": 0},
        {"n_envs": 1.5},
        {"n_envs": True},
        {"vectorization": "threads"},
        {"gamma": 1.5},
        {"clip_obs": 0.0},
    ],
)
def test_bad_config_values(kwargs):
    with pytest.raises(ConfigError):
        make_vec_env("CartPole-v1", **kwargs)


def test_missing_dependency_names_the_extra():
    with pytest.raises(ConfigError, match=r"pip install 'rl_sever\[box2d\]'"):
        make_vec_env("RlSeverTest/NoBox2D-v0", 2)
    with pytest.raises(ConfigError, match=r"rl_sever\[box2d\]"):
        make_env("RlSeverTest/NoBox2D-v0")


def test_missing_mujoco_and_ale_name_their_extras(monkeypatch):
    """The default set-up installs both; without them (a `None` module fails to import, and the
    env modules that imported them are forgotten) the error names the extra."""
    import sys

    for name in [m for m in sys.modules if m.startswith("gymnasium.envs.mujoco.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "mujoco", None)
    monkeypatch.setitem(sys.modules, "ale_py", None)
    with pytest.raises(ConfigError, match=r"rl_sever\[mujoco\]"):
        make_vec_env("HalfCheetah-v5")
    with pytest.raises(ConfigError, match=r"rl_sever\[atari\]"):
        make_vec_env("ALE/Pong-v5")
