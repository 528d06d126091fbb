"""Replay buffer: wrap-around, sampling bounds, n-step folding, save/restore round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rl_sever.core.rollout import Step
from rl_sever.errors import CheckpointError, ConfigError
from rl_sever.offpolicy.replay import ReplayBuffer


def filled(capacity=6, n_envs=2, steps=4, **kw) -> ReplayBuffer:
    buf = ReplayBuffer(capacity, n_envs, (2,), np.float32, (1,), **kw)
    for t in range(steps):
        obs = np.array([[t, e] for e in range(n_envs)], np.float32)
        buf.add(Step(
            obs,
            np.full((n_envs, 1), t, np.float32),
            np.full(n_envs, t, np.float32),
            np.zeros(n_envs, bool),
            np.zeros(n_envs, bool),
            obs + 100,
        ))
    return buf


def test_capacity_is_counted_in_transitions_and_rounded_up_to_whole_rows():
    buf = ReplayBuffer(5, 2, (3,), np.float32, (1,))
    assert buf.rows == 3 and buf.capacity == 6 and len(buf) == 0


def test_wrap_around_overwrites_the_oldest_rows():
    buf = filled(capacity=6, n_envs=2, steps=4)  # 3 rows: steps 0, 1, 2, then 3 overwrites 0
    assert buf.full and buf.pos == 1 and len(buf) == 6
    np.testing.assert_array_equal(buf.obs[:, 0, 0], [3, 1, 2])
    np.testing.assert_array_equal(buf.obs[:, 1, 1], [1, 1, 1])  # env column kept
    np.testing.assert_array_equal(buf.next_obs[0, 0], [103, 100])


def test_sampling_stays_within_the_filled_rows():
    buf = filled(capacity=100, n_envs=2, steps=3)
    t, e = buf.sample_indices(2000)
    assert t.min() == 0 and t.max() == 2 and set(e) == {0, 1}
    batch = buf.sample(64)
    assert batch["obs"].shape == (64, 2) and batch["actions"].shape == (64, 1)
    assert batch["rewards"].dtype == np.float32 and batch["terminated"].dtype == np.float32
    np.testing.assert_array_equal(batch["next_obs"], batch["obs"] + 100)
    np.testing.assert_allclose(batch["discounts"], 0.99)


def test_sampling_an_empty_buffer_raises():
    with pytest.raises(ValueError, match="empty"):
        ReplayBuffer(10, 1, (1,), np.float32, (1,)).sample(4)


def nstep_buffer(dones, terminated, n_step=3, gamma=0.5):
    buf = ReplayBuffer(10, 1, (1,), np.float32, (1,), n_step=n_step, gamma=gamma)
    for t, (d, term) in enumerate(zip(dones, terminated)):
        buf.add(Step(
            np.array([[t]], np.float32),
            np.zeros((1, 1), np.float32),
            np.array([t + 1.0], np.float32),
            np.array([term]),
            np.array([d and not term]),
            np.array([[t + 100]], np.float32),
        ))
    return buf


def test_n_step_returns_stop_at_episode_ends_and_at_the_newest_step():
    # steps 0..5; step 1 terminates, step 3 is truncated; rewards t + 1; gamma 0.5, n = 3.
    buf = nstep_buffer(dones=[0, 1, 0, 1, 0, 0], terminated=[0, 1, 0, 0, 0, 0])
    b = buf.gather(np.arange(6), np.zeros(6, int))
    # t=0: r0 + .5 r1, ends (terminated) at 1 -> next_obs 101, terminated, discount .25
    # t=2: r2 + .5 r3, truncated at 3 -> bootstrap from 103, discount .25
    # t=4: r4 + .5 r5, newest step is 5 -> bootstrap from 105
    np.testing.assert_allclose(b["rewards"], [1 + 1, 2, 3 + 2, 4, 5 + 3, 6])
    np.testing.assert_array_equal(b["next_obs"][:, 0], [101, 101, 103, 103, 105, 105])
    np.testing.assert_array_equal(b["terminated"], [1, 1, 0, 0, 0, 0])
    np.testing.assert_allclose(b["discounts"], [0.25, 0.5, 0.25, 0.5, 0.25, 0.5])


def test_n_step_full_window_and_one_step_extras():
    buf = nstep_buffer(dones=[0] * 5, terminated=[0] * 5, n_step=3, gamma=0.5)
    b = buf.gather(np.array([0, 1]), np.zeros(2, int), one_step=True)
    np.testing.assert_allclose(b["rewards"], [1 + 1 + 0.75, 2 + 1.5 + 1])
    np.testing.assert_array_equal(b["next_obs"][:, 0], [102, 103])
    np.testing.assert_allclose(b["discounts"], [0.125, 0.125])
    np.testing.assert_allclose(b["step_rewards"], [1, 2])
    np.testing.assert_array_equal(b["step_next_obs"][:, 0], [100, 101])


def test_n_step_windows_do_not_cross_the_write_head_after_wrapping():
    buf = ReplayBuffer(4, 1, (1,), np.float32, (1,), n_step=3, gamma=1.0)
    for t in range(6):  # rows now hold steps [4, 5, 2, 3], pos = 2
        buf.add(Step(
            np.array([[t]], np.float32),
            np.zeros((1, 1), np.float32),
            np.array([1.0], np.float32),
            np.array([False]),
            np.array([False]),
            np.array([[t + 100]], np.float32),
        ))
    b = buf.gather(np.array([2, 3, 0, 1]), np.zeros(4, int))  # steps 2, 3, 4, 5
    np.testing.assert_allclose(b["rewards"], [3, 3, 2, 1])
    np.testing.assert_array_equal(b["next_obs"][:, 0], [104, 105, 105, 105])


def test_save_and_load_round_trip(tmp_path):
    buf = filled(capacity=8, n_envs=2, steps=3, seed=7)
    buf.rng.integers(0, 10, 5)  # advance the sampler
    path = buf.save(tmp_path / "replay-300")
    assert sorted(p.name for p in path.iterdir()) == sorted(
        [
            "obs.npy",
            "next_obs.npy",
            "actions.npy",
            "rewards.npy",
            "terminated.npy",
            "dones.npy",
            "meta.json",
        ]
    )
    assert np.load(path / "obs.npy", allow_pickle=False).shape == (3, 2, 2)  # filled rows only
    json.loads((path / "meta.json").read_text())
    other = ReplayBuffer(8, 2, (2,), np.float32, (1,), seed=123)
    other.load(path)
    for name in ("obs", "next_obs", "actions", "rewards", "terminated", "dones"):
        np.testing.assert_array_equal(getattr(other, name), getattr(buf, name))
    assert (other.pos, other.full, len(other)) == (buf.pos, buf.full, len(buf))
    a, b = buf.sample(32), other.sample(32)  # same sampler state: same batches
    for k in a.keys():
        np.testing.assert_array_equal(a[k], b[k])


def test_save_is_replaced_atomically_and_load_checks_shapes(tmp_path):
    buf = filled(capacity=8, n_envs=2, steps=2)
    buf.save(tmp_path / "r")
    buf.add(Step(
        *[
            np.zeros(s, dtype)
            for s, dtype in [
                ((2, 2), np.float32),
                ((2, 1), np.float32),
                ((2,), np.float32),
                ((2,), bool),
                ((2,), bool),
                ((2, 2), np.float32),
            ]
        ]
    ))
    buf.save(tmp_path / "r")  # overwrite
    assert not (tmp_path / "r.tmp").exists()
    assert np.load(tmp_path / "r" / "obs.npy").shape[0] == 3
    with pytest.raises(CheckpointError, match="buffer_size or n_envs"):
        ReplayBuffer(100, 2, (2,), np.float32, (1,)).load(tmp_path / "r")
    with pytest.raises(CheckpointError, match="no complete replay"):
        ReplayBuffer(8, 2, (2,), np.float32, (1,)).load(tmp_path / "missing")


def test_invalid_sizes_are_config_errors():
    with pytest.raises(ConfigError):
        ReplayBuffer(0, 1, (1,), np.float32, (1,))
    with pytest.raises(ConfigError):
        ReplayBuffer(10, 1, (1,), np.float32, (1,), n_step=0)


def image_stream(steps: int, n_envs: int, seed: int = 0, *, break_at: int | None = None):
    """(obs, actions, rewards, terminated, truncated, reached) per vector step of sub-envs with
    small uint8 frames, episode ends (true final frames differ from the next reset frame) and,
    at `break_at`, a discontinuity (as after a resume: the env restarts where it was not done)."""
    rng = np.random.default_rng(seed)
    obs = rng.integers(0, 255, (n_envs, 6, 6, 2), np.uint8)
    out = []
    for t in range(steps):
        reached = rng.integers(0, 255, obs.shape, np.uint8)
        terminated = rng.random(n_envs) < 0.1
        truncated = ~terminated & (rng.random(n_envs) < 0.05)
        nxt = reached.copy()
        done = terminated | truncated
        nxt[done] = rng.integers(0, 255, (int(done.sum()), 6, 6, 2), np.uint8)  # reset frames
        if t + 1 == break_at:
            nxt = rng.integers(0, 255, obs.shape, np.uint8)
        out.append((obs, rng.normal(size=(n_envs, 1)).astype(np.float32),
                    rng.normal(size=n_envs).astype(np.float32), terminated, truncated, reached))
        obs = nxt
    return out


@pytest.mark.parametrize("n_step", [1, 3])
def test_shared_frames_give_the_same_batches_at_half_the_observation_memory(n_step, tmp_path):
    # 23 rows of 3 envs over 50 steps: the ring wraps twice; a break at step 31 (a resume).
    full = ReplayBuffer(69, 3, (6, 6, 2), np.uint8, (1,), n_step=n_step, gamma=0.9)
    shared = ReplayBuffer(69, 3, (6, 6, 2), np.uint8, (1,), n_step=n_step, gamma=0.9,
                          share_frames=True)
    for step in image_stream(50, 3, break_at=31):
        full.add(Step(*step))
        shared.add(Step(*step))
    assert shared.next_obs is None and shared.obs.nbytes == full.obs.nbytes
    t, e = np.meshgrid(np.arange(23), np.arange(3), indexing="ij")
    t, e = t.ravel(), e.ravel()
    expected = full.gather(t, e, one_step=True)
    for name, value in shared.gather(t, e, one_step=True).items():
        np.testing.assert_array_equal(value, expected[name], err_msg=name)
    restored = ReplayBuffer(69, 3, (6, 6, 2), np.uint8, (1,), n_step=n_step, gamma=0.9,
                            share_frames=True)
    restored.load(shared.save(tmp_path / "replay"))
    assert restored.explicit.keys() == shared.explicit.keys()
    for name, value in restored.gather(t, e, one_step=True).items():
        np.testing.assert_array_equal(value, expected[name], err_msg=name)
    with pytest.raises(CheckpointError, match="share_frames"):
        ReplayBuffer(69, 3, (6, 6, 2), np.uint8, (1,), n_step=n_step).load(tmp_path / "replay")


def test_image_observations_share_frames_in_off_policy_agents():
    from tests.helpers import tiny_agent

    agent = tiny_agent("sac", "Pixels/Pendulum-v1", fill=40)
    assert agent.replay.share_frames and agent.replay.next_obs is None
    batch = agent.replay.sample(8)
    assert batch.next_obs.dtype == np.uint8 and batch.next_obs.shape == batch.obs.shape
    agent.close()
