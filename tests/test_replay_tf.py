"""The replay buffer in tf.Variables (rl_sever.offpolicy.replay_tf): ring write head and wrap-around,
sampling bounds, the NumPy buffer's batch keys / dtypes / n-step folding, XLA, checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from rl_sever.core.rollout import Step
from rl_sever.errors import ConfigError
from rl_sever.offpolicy.replay import ReplayBuffer
from rl_sever.offpolicy.replay_tf import TFReplayBuffer

SEED = tf.constant([3, 40], tf.int32)


def step(t: int, n: int, *, done_every: int = 0):
    """One vector step whose obs encode (step t, env e) as obs[:, 0] = t, obs[:, 1] = e."""
    obs = np.stack([np.full(n, t), np.arange(n), np.zeros(n)], 1).astype(np.float32)
    actions = np.full((n, 1), (t % 7) / 7.0, np.float32)
    rewards = (t + 0.5 * np.arange(n)).astype(np.float32)
    ended = done_every > 0 and t % done_every == done_every - 1
    terminated = np.array([ended and e % 2 == 0 for e in range(n)])
    truncated = np.array([ended and e % 2 == 1 for e in range(n)])
    return obs, actions, rewards, terminated, truncated, obs + 100.0


def filled(capacity: int, n: int, steps: int, **kwargs) -> TFReplayBuffer:
    buf = TFReplayBuffer(capacity, n, (3,), tf.float32, (1,), **kwargs)
    for t in range(steps):
        buf.add(Step(*map(tf.constant, step(t, n))))
    return buf


def test_ring_write_head_wraps_around_and_overwrites_the_oldest_rows():
    buf = filled(10, 2, 7)  # 5 rows of 2 envs
    assert buf.rows == 5 and buf.capacity == 10
    assert int(buf.pos.numpy()) == 2 and buf.filled_rows == 5 and len(buf) == 10
    rows = buf.obs.numpy().reshape(5, 2, 3)[:, :, 0]
    # Steps 5 and 6 overwrote rows 0 and 1; rows 2-4 still hold steps 2-4.
    np.testing.assert_array_equal(rows[:, 0], [5, 6, 2, 3, 4])
    np.testing.assert_array_equal(rows[:, 1], [5, 6, 2, 3, 4])
    np.testing.assert_array_equal(buf.obs.numpy().reshape(5, 2, 3)[:, :, 1], [[0, 1]] * 5)


def test_sampling_stays_in_the_filled_rows_and_covers_every_env():
    buf = filled(100, 4, 3)  # 25 rows, 3 filled
    batch = buf.sample(2000, SEED)
    t, e = batch["obs"][:, 0].numpy(), batch["obs"][:, 1].numpy()
    assert set(t) == {0, 1, 2} and set(e) == {0, 1, 2, 3}
    np.testing.assert_array_equal(batch["next_obs"].numpy(), batch["obs"].numpy() + 100)
    # Same seed, same batch; another seed, another batch (stateless sampling).
    again = buf.sample(2000, SEED)["obs"].numpy()
    np.testing.assert_array_equal(again, batch["obs"].numpy())
    other = buf.sample(2000, SEED + [0, 2])["obs"].numpy()
    assert not np.array_equal(other, batch["obs"].numpy())


def test_empty_buffer_samples_zeros_instead_of_failing_in_graph():
    buf = TFReplayBuffer(8, 2, (3,), tf.float32, (1,))
    assert len(buf) == 0 and int(buf.size().numpy()) == 0
    assert not buf.sample(4, SEED)["obs"].numpy().any()


@pytest.mark.parametrize("n_step, one_step", [(1, False), (3, False), (3, True)])
def test_batches_match_the_numpy_buffer(n_step, one_step):
    """Same transitions, same (row, env) indices: same keys, dtypes, shapes and values, n-step
    windows stopping at episode ends and at the newest row across the wrap-around."""
    n, capacity, steps = 3, 18, 9  # 6 rows: wraps around
    np_buf = ReplayBuffer(capacity, n, (3,), np.float32, (1,), n_step=n_step, gamma=0.9)
    tf_buf = TFReplayBuffer(capacity, n, (3,), tf.float32, (1,), n_step=n_step, gamma=0.9)
    for t in range(steps):
        data = step(t, n, done_every=4)
        np_buf.add(Step(*data))
        tf_buf.add(Step(*map(tf.constant, data)))
    t_idx, e_idx = np.meshgrid(np.arange(6), np.arange(n), indexing="ij")
    t_idx, e_idx = t_idx.ravel(), e_idx.ravel()
    want = np_buf.gather(t_idx, e_idx, one_step=one_step)
    got = tf_buf.gather(
        tf.constant(t_idx, tf.int32), tf.constant(e_idx, tf.int32), one_step=one_step
    )
    assert got.keys() == want.keys()
    for k in want.keys():
        assert got[k].dtype.as_numpy_dtype == want[k].dtype, k
        np.testing.assert_allclose(got[k].numpy(), want[k], rtol=1e-6, err_msg=k)
    if n_step > 1:
        assert 0 < (want["discounts"] > 0.9**3 + 1e-6).sum() < len(t_idx)  # some windows cut short
    sampled = tf_buf.sample(16, SEED, one_step=one_step)
    for k, v in np_buf.sample(16, one_step=one_step).items():
        assert sampled[k].shape == v.shape and sampled[k].dtype.as_numpy_dtype == v.dtype, k


def test_add_and_sample_compile_with_xla():
    buf = TFReplayBuffer(12, 2, (3,), tf.float32, (1,), n_step=2)

    @tf.function(jit_compile=True)
    def add_then_sample(t):
        x = tf.fill([2, 3], tf.cast(t, tf.float32))
        buf.add(Step(
            x, tf.zeros([2, 1]), tf.ones([2]), tf.zeros([2], tf.bool), tf.zeros([2], tf.bool), x
        ))
        return buf.sample(32, tf.stack([t, 1]))

    for t in range(8):
        out = add_then_sample(tf.constant(t))
    assert add_then_sample.experimental_get_tracing_count() == 1
    assert int(buf.pos.numpy()) == 2 and buf.filled_rows == 6
    assert set(np.unique(out["obs"].numpy())) <= {2.0, 3.0, 4.0, 5.0, 6.0, 7.0}


def test_checkpoint_round_trip_restores_contents_head_and_samples(tmp_path):
    buf = filled(10, 2, 7, n_step=2)
    path = tf.train.Checkpoint(replay=buf).save(str(tmp_path / "ckpt"))
    fresh = TFReplayBuffer(10, 2, (3,), tf.float32, (1,), n_step=2)
    tf.train.Checkpoint(replay=fresh).restore(path).assert_consumed()
    for name in ("obs", "next_obs", "actions", "rewards", "terminated", "dones", "pos", "filled"):
        np.testing.assert_array_equal(getattr(fresh, name).numpy(), getattr(buf, name).numpy())
    for k, v in buf.sample(64, SEED).items():
        np.testing.assert_array_equal(fresh.sample(64, SEED)[k].numpy(), v.numpy(), err_msg=k)


def test_invalid_sizes_are_config_errors():
    with pytest.raises(ConfigError, match="positive"):
        TFReplayBuffer(0, 1, (3,), tf.float32, (1,))
    with pytest.raises(ConfigError, match="n_step"):
        TFReplayBuffer(8, 1, (3,), tf.float32, (1,), n_step=0)
