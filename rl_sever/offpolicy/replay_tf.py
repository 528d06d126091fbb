"""Replay buffer held in tf.Variables, written and sampled inside compiled steps, so the in-graph
trainer's act -> step -> store -> update chunk never leaves the graph
(docs/ingraph.md#off-policy-sac-td3). Layout, semantics and `sample`'s Transitions are the NumPy
`rl_sever.offpolicy.replay.ReplayBuffer`'s, so the agent's `_update` consumes either unchanged.

Randomness is a stateless seed passed in (the agent's `next_seed()`), never a stateful RNG:
XLA-friendly, checkpoint-exact and reproducible. Only sparse ops (scatter, gather) touch the
storage, which TensorFlow runs in place on the variables (a dense read would copy them). The
storage is flat, `[rows * n_envs, ...]` with transition (row t, env e) at `t * n_envs + e`,
because XLA compiles gathers from a variable along its first axis only (no ResourceGatherNd).
As a tf.Module, its variables go into the TF checkpoint whole, unfilled rows included.
"""

from __future__ import annotations

import tensorflow as tf

from rl_sever.core.rollout import Step
from rl_sever.offpolicy.replay import Transitions, replay_rows


class TFReplayBuffer(tf.Module):
    """Fixed-capacity ring buffer of vector-env transitions in tf.Variables.

    `capacity` counts transitions over all sub-envs (rounded up to a multiple of n_envs), as in
    the NumPy buffer. `add` and `sample` work eagerly and inside tf.function / XLA.
    """

    def __init__(self, capacity: int, n_envs: int, obs_shape: tuple[int, ...], obs_dtype,
                 action_shape: tuple[int, ...], *, n_step: int = 1, gamma: float = 0.99,
                 name: str = "replay"):
        super().__init__(name=name)
        self.n_envs = int(n_envs)
        self.rows = replay_rows(capacity, n_envs, n_step)
        self.n_step, self.gamma = int(n_step), float(gamma)
        r, n = self.rows, self.n_envs
        obs_dtype = tf.as_dtype(obs_dtype)

        def storage(shape, dtype, name):
            return tf.Variable(tf.zeros([r * n, *shape], dtype), trainable=False, name=name)

        self.obs = storage(obs_shape, obs_dtype, "obs")
        self.next_obs = storage(obs_shape, obs_dtype, "next_obs")
        self.actions = storage(action_shape, tf.float32, "actions")
        self.rewards = storage((), tf.float32, "rewards")
        self.terminated = storage((), tf.bool, "terminated")
        self.dones = storage((), tf.bool, "dones")  # terminated or truncated: n-step windows stop
        self.pos = tf.Variable(0, dtype=tf.int32, trainable=False, name="pos")  # next row written
        self.filled = tf.Variable(0, dtype=tf.int32, trainable=False, name="filled")  # rows held

    # -- writing ---------------------------------------------------------------------------
    def add(self, step: Step) -> None:
        """Store one vector-env step (tensors with a leading n_envs axis) at the write head."""
        obs, actions, rewards, terminated, truncated, next_obs = step[:6]
        t = self.pos.read_value()
        row = (t * self.n_envs + tf.range(self.n_envs))[:, None]
        self.obs.scatter_nd_update(row, obs)
        self.next_obs.scatter_nd_update(row, next_obs)
        self.actions.scatter_nd_update(row, tf.cast(actions, tf.float32))
        self.rewards.scatter_nd_update(row, tf.cast(rewards, tf.float32))
        self.terminated.scatter_nd_update(row, terminated)
        self.dones.scatter_nd_update(row, tf.logical_or(terminated, truncated))
        self.pos.assign((t + 1) % self.rows)
        self.filled.assign(tf.minimum(self.filled + 1, self.rows))

    # -- sizes -----------------------------------------------------------------------------
    @property
    def capacity(self) -> int:
        return self.rows * self.n_envs

    @property
    def filled_rows(self) -> int:
        return int(self.filled.numpy())

    def __len__(self) -> int:
        """Number of stored transitions (over all sub-envs); eager only."""
        return self.filled_rows * self.n_envs

    def size(self) -> tf.Tensor:
        """Stored transitions as an int32 tensor (usable inside compiled steps)."""
        return self.filled * self.n_envs

    # -- sampling --------------------------------------------------------------------------
    def sample_indices(self, batch_size: int, seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """(row, env) indices of `batch_size` transitions, uniform with replacement; `seed` is
        a [2] int32 stateless seed (its second word + 1 is used too)."""
        rows = tf.maximum(self.filled, 1)  # an empty buffer samples row 0 (zeros), never fails
        t = tf.random.stateless_uniform([batch_size], seed, 0, rows, dtype=tf.int32)
        e = tf.random.stateless_uniform([batch_size], seed + tf.constant([0, 1], seed.dtype), 0,
                                        self.n_envs, dtype=tf.int32)
        return t, e

    def sample(self, batch_size: int, seed: tf.Tensor, *, one_step: bool = False) -> Transitions:
        """A uniform batch; fields, dtypes and n-step folding as ReplayBuffer.sample."""
        t, e = self.sample_indices(batch_size, seed)
        return self.gather(t, e, one_step=one_step)

    def gather(self, t: tf.Tensor, e: tf.Tensor, *, one_step: bool = False) -> Transitions:
        """The batch at (row, env) indices `t`, `e` (see ReplayBuffer.gather)."""
        n = self.n_envs
        te = t * n + e
        obs, actions = tf.gather(self.obs, te), tf.gather(self.actions, te)
        if self.n_step == 1:
            return Transitions(obs, actions, tf.gather(self.rewards, te),
                               tf.gather(self.next_obs, te),
                               tf.cast(tf.gather(self.terminated, te), tf.float32),
                               tf.fill(tf.shape(t), tf.constant(self.gamma, tf.float32)))
        # n-step windows stop at an episode end (terminated or truncated: a truncated window
        # bootstraps from the true final obs) and at the newest stored row (pos - 1).
        ahead = tf.math.floormod(self.pos - 1 - t, self.rows)
        ret, alive = tf.zeros(tf.shape(t), tf.float64), tf.ones(tf.shape(t), tf.bool)
        last, span = t, tf.zeros(tf.shape(t), tf.int32)
        for k in range(self.n_step):
            row = (t + k) % self.rows
            reward = tf.cast(tf.gather(self.rewards, row * n + e), tf.float64)
            ret += tf.where(alive, self.gamma**k * reward, 0.0)
            last = tf.where(alive, row, last)
            span += tf.cast(alive, tf.int32)
            alive = alive & ~tf.gather(self.dones, row * n + e) & (k + 1 <= ahead)
        end = last * n + e
        discounts = tf.pow(tf.constant(self.gamma, tf.float64), tf.cast(span, tf.float64))
        step = (tf.gather(self.rewards, te), tf.gather(self.next_obs, te)) if one_step else ((), ())
        return Transitions(obs, actions, tf.cast(ret, tf.float32), tf.gather(self.next_obs, end),
                           tf.cast(tf.gather(self.terminated, end), tf.float32),
                           tf.cast(discounts, tf.float32), *step)
