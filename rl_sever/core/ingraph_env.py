"""TF-native envs under an agent: which vector envs can run in-graph, and their checkpointed state.

Both families train in-graph when the vector env is a TF-native one (``tf:<id>``, envs.tfnative):
rl_sever.onpolicy.ingraph and rl_sever.offpolicy.ingraph. This module holds what they share:
the env state, the compiled driver of the rollout step (`drive`), and the episodes' bookkeeping.
"""

from __future__ import annotations

import tensorflow as tf
from gymnasium.vector import VectorEnv, VectorWrapper

from envs import EpisodeStats, VecNormalize, episode_stats
from envs.tfnative import EnvState, TFNativeVectorEnv
from rl_sever.core.rollout import env_step
from rl_sever.errors import ConfigError


def tfnative_env(env: VectorEnv):
    """The TFEnv behind `env` if in-graph training can use it, else None.

    That is: the bottom of the wrapper chain is an ``envs.tfnative.TFNativeVectorEnv`` and the
    only wrapper above it is EpisodeStats (whose bookkeeping the in-graph collector feeds
    itself). Any other wrapper changes what the agent sees, so such an env is stepped from
    Python through its Gymnasium view instead; VecNormalize raises a ConfigError, since the
    in-graph path does not normalise and silently dropping it would change the run.
    """
    normalized, other = False, False
    while isinstance(env, VectorWrapper):
        normalized |= isinstance(env, VecNormalize)
        other |= not isinstance(env, (EpisodeStats, VecNormalize))
        env = env.env
    if not isinstance(env, TFNativeVectorEnv) or other:
        return None
    if normalized:
        raise ConfigError(
            "normalize_obs / normalize_reward cannot be used with a TF-native (tf:) env: "
            "in-graph training does not normalise observations or rewards. Set them to false, "
            "or train on the Gymnasium id (without the tf: prefix)."
        )
    return env.env


class InGraphEnvState(tf.Module):
    """The state of N TF-native envs between iterations, as checkpointable variables."""

    def __init__(self, env, n: int):
        super().__init__(name="ingraph_env")
        self.env, self.n = env, n
        self.physics = tf.Variable(tf.zeros([n, env.physics_dim], env.physics_dtype),
                                   trainable=False, name="physics")
        self.t = tf.Variable(tf.zeros([n], tf.int32), trainable=False, name="t")
        self.key = tf.Variable(tf.zeros([2], tf.int64), trainable=False, name="key")
        # Running return/length of each env's current episode (float64 like EpisodeStats).
        self.ep_return = tf.Variable(tf.zeros([n], tf.float64), trainable=False, name="ep_return")
        self.ep_length = tf.Variable(tf.zeros([n], tf.int32), trainable=False, name="ep_length")
        self.started = tf.Variable(False, trainable=False, name="started")

    def read(self):
        return EnvState(self.physics.read_value(), self.t.read_value(), self.key.read_value())

    def write(self, state) -> None:
        self.physics.assign(state.physics)
        self.t.assign(state.t)
        self.key.assign(state.key)

    def start(self, seed: int) -> None:
        """Reset every env (eagerly) unless the state already holds episodes in progress."""
        if not bool(self.started.numpy()):
            self.write(self.env.reset(seed, self.n))
            self.ep_return.assign(tf.zeros_like(self.ep_return))
            self.ep_length.assign(tf.zeros_like(self.ep_length))
            self.started.assign(True)


def drive(env, s: InGraphEnvState, n_vec, max_steps: int, act, after, carry, store=None):
    """Up to `n_vec` (<= `max_steps`) vector steps of `env_step` in one tf.while_loop, from and
    back into the checkpointed env state `s`: the in-graph twin of a collector's Python loop,
    counting each env's episode return and length as EpisodeStats does on the Gymnasium path.

    Per step, `act(i, obs)` gives (actions, env_actions, behaviour: dict of the Step's optional
    fields); the Step goes to `store` (if any); `after(i, Step, carry)` returns the new carry
    and whether to stop after this step. One step at a time (parallel_iterations=1):
    each acts with the parameters an update in the previous one left. Returns (vector steps
    run, carry, episodes {dones, returns, lengths} [max_steps, n_envs]) for `record_episodes`.
    """
    K, n = max_steps, s.n

    def body(i, state, obs, ep_ret, ep_len, ended, carry, stop):
        actions, env_actions, behaviour = act(i, obs)
        state, next_obs, step = env_step(env, state, obs, actions, env_actions, store,
                                         **behaviour)
        done = step.terminated | step.truncated
        ep_ret, ep_len = ep_ret + tf.cast(step.rewards, tf.float64), ep_len + 1
        ended = tuple(tf.tensor_scatter_nd_update(b, [[i]], x[None]) for b, x in zip(
            ended, (done, tf.where(done, ep_ret, 0.0), tf.where(done, ep_len, 0))))
        carry, stop = after(i, step, carry)
        ep_ret = tf.where(done, tf.zeros_like(ep_ret), ep_ret)
        return i + 1, state, next_obs, ep_ret, tf.where(done, 0, ep_len), ended, carry, stop

    state = s.read()
    init = (tf.constant(0), state, env.observe(state), s.ep_return.read_value(),
            s.ep_length.read_value(),
            (tf.zeros([K, n], tf.bool), tf.zeros([K, n], tf.float64), tf.zeros([K, n], tf.int32)),
            carry, tf.constant(False))
    i, state, _, ep_ret, ep_len, ended, carry, _ = tf.while_loop(
        lambda i, *rest: (i < n_vec) & ~rest[-1], body, init, maximum_iterations=K,
        parallel_iterations=1)
    s.write(state)
    s.ep_return.assign(ep_ret)
    s.ep_length.assign(ep_len)
    return i, carry, {"dones": ended[0], "returns": ended[1], "lengths": ended[2]}


def record_episodes(stats, episodes: dict[str, tf.Tensor]) -> None:
    """Push the episodes a compiled call saw end ({dones, returns, lengths}, time-major) into the
    env's EpisodeStats, in the order they ended."""
    done = episodes["dones"].numpy()
    if done.any():
        stats.record_episodes(episodes["returns"].numpy()[done], episodes["lengths"].numpy()[done])


class TFEnvCollector:
    """Base of the training loop's collectors on TF-native envs: the env state lives in the
    trainer's variables (checkpointed), not in the collector. `audit_next`: the first update of
    a fresh run is handed to the loop as a batch, so it audits the gradient flow first."""

    def __init__(self, agent, fresh: bool):
        self.agent, self.trainer = agent, agent.ingraph
        self.stats = episode_stats(agent.env)
        self.audit_next = bool(agent.config.audit) and fresh
        self.started = False

    def start(self) -> None:
        if not self.started:  # seeded like the env.reset of a fresh run on the Gymnasium path
            self.trainer.state.start(self.agent.config.seed + int(self.agent.global_step.numpy()))
            self.started = True
