"""In-graph on-policy training on TF-native environments (``tf:<id>`` env ids).

When an on-policy agent's vector env is a TF-native one (envs.tfnative), a whole training
iteration runs as ONE compiled call: the rollout of n_steps over all N envs (policy sampling
and ``env.step_autoreset`` in a ``tf.while_loop`` writing TensorArrays), then GAE and every
epoch and minibatch of the update (``agent._train``) on the collected [T, N] tensors. Nothing
returns to Python between env steps; the shared training loop (rl_sever.training_loop) only
schedules, logs and checkpoints around it.

How the loop stays shared: ``InGraphCollector.collect`` runs the fused call and returns a
``TrainedBatch`` (the metrics of an update that already happened), which
``OnPolicyAgent.train`` passes through. The first iteration of a fresh run is the exception:
when the audit is on (config.audit, the default) it is rollout-only and returns the ordinary
rollout dict, so the loop's gradient-flow audit runs on a real batch before the ordinary
compiled update (``agent.train_fn``) trains on it.

The env state (an EnvState) and the per-env running episode return/length live in
tf.Variables (``InGraphEnvState``), part of the agent's checkpoint, so a resumed run continues
the same episodes. Finished episodes come back per iteration and are pushed into the env's
EpisodeStats wrapper, so rollout/ep_rew_mean and ep_len_mean are computed as on the Gymnasium
path.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import tensorflow as tf
from gymnasium.vector import VectorEnv, VectorWrapper

from rl_sever.errors import ConfigError


class TrainedBatch(NamedTuple):
    """What a fused in-graph iteration hands the loop: the update already ran on its rollout."""

    metrics: dict[str, tf.Tensor]
    """The outputs of ``agent._train`` (raw names; ``OnPolicyAgent.train`` maps them)."""


def tfnative_env(env: VectorEnv):
    """The TFEnv behind `env` if in-graph training can use it, else None.

    That is: the bottom of the wrapper chain is an ``envs.tfnative.TFNativeVectorEnv`` and the
    only wrapper above it is EpisodeStats (whose bookkeeping the in-graph collector feeds
    itself). Any other wrapper changes what the agent sees, so such an env is stepped from
    Python through its Gymnasium view instead; VecNormalize raises a ConfigError, since the
    in-graph path does not normalise and silently dropping it would change the run.
    """
    from envs import EpisodeStats, VecNormalize

    try:
        from envs.tfnative import TFNativeVectorEnv
    except ModuleNotFoundError:
        return None
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
        self.physics = tf.Variable(
            tf.zeros([n, env.physics_dim], env.physics_dtype), trainable=False, name="physics"
        )
        self.t = tf.Variable(tf.zeros([n], tf.int32), trainable=False, name="t")
        self.key = tf.Variable(tf.zeros([2], tf.int64), trainable=False, name="key")
        # Running return/length of each env's current episode (float64 like EpisodeStats).
        self.ep_return = tf.Variable(tf.zeros([n], tf.float64), trainable=False, name="ep_return")
        self.ep_length = tf.Variable(tf.zeros([n], tf.int32), trainable=False, name="ep_length")
        self.started = tf.Variable(False, trainable=False, name="started")

    def read(self):
        from envs.tfnative import EnvState

        return EnvState(self.physics.read_value(), self.t.read_value(), self.key.read_value())

    def write(self, state) -> None:
        self.physics.assign(state.physics)
        self.t.assign(state.t)
        self.key.assign(state.key)


class InGraphTrainer:
    """The agent's compiled in-graph functions, built once per agent so they trace once.

    ``iteration_fn()``: rollout + update in one call, returns (metrics, episodes).
    ``rollout_fn()``: the rollout alone, returns (batch, episodes) (first iteration, audit).
    Both take no arguments: every input (env state, parameters, schedules, flags) is a
    tf.Variable, so annealing and switching never retrace.
    """

    def __init__(self, agent, env):
        cfg = agent.config
        self.agent, self.env = agent, env
        self.n_envs, self.n_steps = cfg.n_envs, cfg.n_steps
        self.state = InGraphEnvState(env, self.n_envs)
        self.rollout_fn = tf.function(self._rollout, input_signature=[])
        self.iteration_fn = tf.function(
            self._iteration,
            input_signature=[],
            jit_compile=bool(getattr(cfg, "jit_compile", False)),
        )
        act = agent.action
        if act.kind == "box":  # clip only what the env sees; the batch keeps the sample
            low, high = tf.constant(act.low), tf.constant(act.high)
            self._env_action = lambda a: tf.clip_by_value(a, low, high)
        else:
            self._env_action = lambda a: a

    def start(self, seed: int) -> None:
        """Reset every env (eagerly) unless the state already holds episodes in progress."""
        if not bool(self.state.started.numpy()):
            self.state.write(self.env.reset(seed, self.n_envs))
            self.state.ep_return.assign(tf.zeros_like(self.state.ep_return))
            self.state.ep_length.assign(tf.zeros_like(self.state.ep_length))
            self.state.started.assign(True)

    # -- compiled bodies ------------------------------------------------------------------
    def _rollout(self):
        agent, env, s = self.agent, self.env, self.state
        T, n = self.n_steps, self.n_envs
        state = s.read()

        def buffer(dtype, shape=()):
            return tf.TensorArray(dtype, size=T, element_shape=[n, *shape])

        obs_shape, act_shape = agent.obs_shape, agent.action.shape
        # obs, actions, rewards, terminated, dones, next_obs, ended returns, ended lengths
        bufs = (
            buffer(tf.float32, obs_shape),
            buffer(tf.as_dtype(agent.action.dtype), act_shape),
            buffer(tf.float32),
            buffer(tf.bool),
            buffer(tf.bool),
            buffer(tf.float32, obs_shape),
            buffer(tf.float64),
            buffer(tf.int32),
        )

        def body(i, state, obs, ep_ret, ep_len, bufs):
            actions = agent._act(obs)
            state, next_obs, reward, terminated, truncated, reached = env.step_autoreset(
                state, self._env_action(actions)
            )
            done = terminated | truncated
            # `reached` is the true last obs where an episode ended (bootstrap from it);
            # `next_obs` already starts the next episode there.
            ep_ret = ep_ret + tf.cast(reward, tf.float64)
            ep_len = ep_len + 1
            row = (
                obs,
                actions,
                reward,
                terminated,
                done,
                reached,
                tf.where(done, ep_ret, 0.0),
                tf.where(done, ep_len, 0),
            )
            bufs = tuple(b.write(i, x) for b, x in zip(bufs, row))
            ep_ret = tf.where(done, tf.zeros_like(ep_ret), ep_ret)
            ep_len = tf.where(done, tf.zeros_like(ep_len), ep_len)
            return i + 1, state, next_obs, ep_ret, ep_len, bufs

        init = (
            tf.constant(0),
            state,
            env.observe(state),
            s.ep_return.read_value(),
            s.ep_length.read_value(),
            bufs,
        )
        _, state, _, ep_ret, ep_len, bufs = tf.while_loop(
            lambda i, *_: i < T, body, init, maximum_iterations=T
        )
        s.write(state)
        s.ep_return.assign(ep_ret)
        s.ep_length.assign(ep_len)
        obs, actions, rewards, terminated, dones, next_obs, ret, length = (b.stack() for b in bufs)
        batch = {
            "obs": obs,
            "actions": actions,
            "rewards": rewards,
            "terminated": terminated,
            "dones": dones,
            "next_obs": next_obs,
        }
        return batch, {"dones": dones, "returns": ret, "lengths": length}

    def _iteration(self):
        batch, episodes = self._rollout()
        metrics = self.agent._train(
            batch["obs"],
            batch["actions"],
            batch["rewards"],
            batch["terminated"],
            batch["dones"],
            batch["next_obs"],
        )
        return metrics, episodes


class InGraphCollector:
    """The training loop's collector for TF-native envs (see the module docstring).

    ``collect(obs)`` ignores and returns `obs` unchanged: the env state lives in the
    trainer's variables, not in the loop's observation.
    """

    def __init__(self, agent):
        from envs import episode_stats

        self.agent, self.trainer = agent, agent.ingraph
        self.stats = episode_stats(agent.env)
        # The loop audits the first update of a fresh run: that iteration is rollout-only, so
        # the audit sees a real batch (then the ordinary compiled update trains on it).
        self.rollout_next = bool(agent.config.audit) and int(agent.global_step.numpy()) == 0
        self.started = False

    def collect(self, obs: Any) -> tuple[Any, dict[str, tf.Tensor] | TrainedBatch, int]:
        trainer = self.trainer
        if not self.started:  # seeded like the loop's env.reset of a fresh run
            trainer.start(self.agent.config.seed + int(self.agent.global_step.numpy()))
            self.started = True
        if self.rollout_next:
            self.rollout_next = False
            batch, episodes = trainer.rollout_fn()
        else:
            metrics, episodes = trainer.iteration_fn()
            batch = TrainedBatch(metrics)
        self._record(episodes)
        return obs, batch, trainer.n_steps * trainer.n_envs

    def _record(self, episodes: dict[str, tf.Tensor]) -> None:
        done = episodes["dones"].numpy()
        if done.any():  # time-major, so episodes come out in the order they ended
            self.stats.record_episodes(
                episodes["returns"].numpy()[done], episodes["lengths"].numpy()[done]
            )
