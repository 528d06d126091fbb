"""In-graph off-policy agents on TF-native envs (rl_sever.offpolicy.ingraph): smoke runs of
every shipped one through the shared loop (logging, audit), one trace for every chunk, the
Gymnasium path's update schedule; for SAC / TD3 also episode ends in the TF replay buffer,
resume, save_replay: false, determinism and clear errors. Learning: test_sac_learning.py
(slow)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import tensorflow as tf

from envs import EpisodeStats
from envs.tfnative import TFEnv, TFNativeVectorEnv
from rl_sever.core.agent import Agent
from rl_sever.core.registry import get_agent_class, registered
from rl_sever.errors import UnsupportedSpaceError
from rl_sever.offpolicy.ingraph import InGraphOffPolicyCollector
from tests.helpers import read_event_tensors, tiny_agent, tiny_config


class CountdownTF(TFEnv):
    """TF twin of tests.helpers.CountdownEnv: obs [t / 10, goal], action in [-2, 2],
    reward = action; terminates at t == 4 when goal > 0, else truncated at t == 6, so both
    episode ends occur and a final obs (t > 0) differs from a reset obs (t == 0)."""

    name = "RlSeverCountdownTF-v0"
    obs_low = np.array([-1.0, -1.0], np.float32)
    obs_high = np.array([1.0, 1.0], np.float32)
    action_low = np.array([-2.0], np.float32)
    action_high = np.array([2.0], np.float32)
    physics_dim = 2
    physics_dtype = tf.float32
    default_max_episode_steps = 6

    def _init_physics(self, key, n):
        goal = tf.where(tf.random.stateless_uniform([n], key) < 0.5, -1.0, 1.0)
        return tf.stack([tf.zeros_like(goal), goal], axis=1)

    def _dynamics(self, physics, action):
        t, goal = physics[:, 0] + 1.0, physics[:, 1]
        terminated = (goal > 0) & tf.equal(t, 4.0)
        return tf.stack([t, goal], axis=1), tf.cast(action[:, 0], tf.float32), terminated

    def _observe(self, physics):
        return tf.stack([physics[:, 0] / 10.0, physics[:, 1]], axis=1)


def countdown_env(n: int) -> gym.vector.VectorEnv:
    return EpisodeStats(TFNativeVectorEnv(CountdownTF(), n))


# Every shipped off-policy page (a new one is covered without editing this file).
OFF_POLICY = sorted(a for a, k in registered().items()
                    if k.mode == "off_policy" and k.__module__.startswith("agents."))


def test_every_shipped_off_policy_page_is_smoke_run():
    assert {"sac", "td3", "ddpg", "tqc", "crossq"} <= set(OFF_POLICY)


@pytest.mark.parametrize("algo", OFF_POLICY)
def test_smoke_run_logs_sb3_names_audits_and_traces_once(algo, tmp_path):
    agent = tiny_agent(
        algo,
        "tf:Pendulum-v1",
        fill=0,
        logdir=tmp_path,
        learning_starts=32,
        log_every_steps=0,
        lr_schedule="linear",
        gradient_steps=2,
    )
    seen = []

    def callback(agent, metrics):  # annealing and switching between chunks: no retrace
        seen.append(dict(metrics))
        agent.loss_weights["actor"].assign(1.0 + 0.1 * len(seen))
        agent.set_frozen("critic", len(seen) % 3 == 2)

    try:
        agent.learn(200, progress=False, callback=callback)
        agent.set_frozen("critic", False)
        agent.learn(64, progress=False, callback=callback)
        assert (
            agent.ingraph is not None
            and agent.ingraph.chunk_fn.experimental_get_tracing_count() == 1
        )
        assert agent.ingraph.sample_fn.experimental_get_tracing_count() == 1
        assert agent.compiled["act"].experimental_get_tracing_count() == 0  # never from Python
        assert int(agent.global_step.numpy()) == 264 and len(agent.replay) == 264
        # Updates from step 32 (32 transitions stored) on, 2 gradient steps each.
        assert int(agent.n_updates.numpy()) == 2 * (264 - 32 + 1)
        tags = read_event_tensors(agent.run_dir)
        keys = [
            "train/actor_loss",
            "train/critic_loss",
            "train/learning_rate",
            "train/n_updates",
            "rollout/ep_rew_mean",
            "rollout/ep_len_mean",
            "time/fps",
        ]
        keys += (["train/ent_coef", "train/ent_coef_loss"]
                 if "ent_coef" in type(agent).train_metric_keys else [])
        for key in keys:
            assert key in tags, key
        assert "audit/gradient_flow" in tags  # the contract audit ran on the first update
        assert all(np.isfinite(v).all() for _, v in tags["train/critic_loss"])
        lrs = [float(v) for _, v in tags["train/learning_rate"]]
        assert lrs[-1] < lrs[0]
        # Chunks of 32 steps; the first stops at step 32 for the audit; 200 -> 264: two more.
        assert len(seen) == 1 + 6 + 2 and isinstance(
            agent.make_collector(), InGraphOffPolicyCollector
        )
    finally:
        agent.close()


def test_chunk_compiles_with_xla_and_n_step_returns():
    """The default on tf: envs: the whole chunk under XLA (jit_compile), here with
    n-step returns folded in the in-graph sampler and 2 envs."""
    agent = tiny_agent(
        "td3",
        "tf:Pendulum-v1",
        fill=0,
        jit_compile=True,
        audit=False,
        learning_starts=32,
        n_step=3,
        n_envs=2,
    )
    history = []
    try:
        agent.learn(128, progress=False, callback=lambda a, m: history.append(dict(m)))
        assert (
            agent.ingraph.jit_compile
            and agent.ingraph.chunk_fn.experimental_get_tracing_count() == 1
        )
        assert int(agent.n_updates.numpy()) == 64 - 16 + 1  # updates from vector step 16 on
        assert np.isfinite(history[-1]["train/critic_loss"])
    finally:
        agent.close()


def test_update_schedule_matches_the_gymnasium_path():
    """Same config on the same TF env, in-graph and stepped from Python through a wrapper
    (which disables the in-graph path): same transitions stored, same number of updates."""
    cfg = dict(
        fill=0, learning_starts=20, train_freq=3, gradient_steps=2, n_envs=2, steps_per_iteration=7
    )
    ingraph = tiny_agent("td3", countdown_env(2), **cfg)
    wrapped = gym.wrappers.vector.RecordEpisodeStatistics(TFNativeVectorEnv(CountdownTF(), 2))
    python = tiny_agent("td3", wrapped, **cfg)
    try:
        assert ingraph.ingraph is not None and python.ingraph is None
        for agent in (ingraph, python):
            agent.learn(90, progress=False)
        assert int(ingraph.global_step.numpy()) == int(python.global_step.numpy()) == 90
        assert len(ingraph.replay) == len(python.replay) == 90
        assert int(ingraph.n_updates.numpy()) == int(python.n_updates.numpy()) > 0
    finally:
        ingraph.close()
        python.close()


def test_episode_ends_store_the_true_final_observation():
    n = 3
    agent = tiny_agent("sac", countdown_env(n), fill=0, n_envs=n, learning_starts=30)
    try:
        agent.learn(120, progress=False)
        buf, rows = agent.replay, agent.replay.filled_rows
        get = lambda v: v.numpy()[: rows * n].reshape(rows, n, *v.shape[1:])  # noqa: E731
        obs, nxt, act = get(buf.obs), get(buf.next_obs), get(buf.actions)
        term, dones, rew = get(buf.terminated), get(buf.dones), get(buf.rewards)
        assert term.any() and (dones & ~term).any()  # both kinds of episode end happened
        # Terminated at t == 4, truncated at t == 6: next_obs is the final state, never the
        # reset observation (t == 0) of the next episode, which starts the next row.
        np.testing.assert_allclose(nxt[term][:, 0], 0.4)
        np.testing.assert_allclose(nxt[dones & ~term][:, 0], 0.6)
        np.testing.assert_allclose(obs[1:][dones[:-1]][:, 0], 0.0)
        np.testing.assert_array_equal(nxt[:-1][~dones[:-1]], obs[1:][~dones[:-1]])
        assert np.all(np.abs(act) <= 1.0)  # unit actions stored, the env saw them scaled
        # Re-simulate from the same start state with the stored actions: the stored next_obs
        # is exactly the env's final_obs, rewards and flags are the env's.
        env = CountdownTF()
        state = env.reset(agent.config.seed, n)
        for t in range(rows):
            np.testing.assert_array_equal(obs[t], env.observe(state).numpy())
            state, _, r, te, tr, final = env.step_autoreset(state, agent.to_env(act[t]))
            np.testing.assert_array_equal(nxt[t], final.numpy())
            np.testing.assert_array_equal(rew[t], r.numpy())
            np.testing.assert_array_equal(term[t], te.numpy())
            np.testing.assert_array_equal(dones[t], (te | tr).numpy())
        # Episode statistics accumulated in-graph: every ended episode, with its length.
        lengths = [
            int(np.diff(np.flatnonzero(np.r_[True, d]))[i])
            for d in dones.T
            for i in range(int(d.sum()))
        ]
        assert set(lengths) == {4, 6} and agent.env.total_episodes == len(lengths)
        assert agent.env.mean_length() == pytest.approx(np.mean(lengths))
    finally:
        agent.close()


def test_resume_continues_with_the_same_buffer_env_and_step_counter(tmp_path):
    agent = tiny_agent("sac", "tf:Pendulum-v1", fill=0, logdir=tmp_path, learning_starts=32)
    agent.learn(96, progress=False)  # saves at the end
    loaded = Agent.load(agent.run_dir)
    try:
        a, b = agent.ingraph, loaded.ingraph
        assert not list((agent.run_dir / "checkpoints").glob("replay-*"))  # no NumPy copy
        assert len(b.replay) == 96 and int(loaded.global_step.numpy()) == 96
        assert int(loaded.n_updates.numpy()) == int(agent.n_updates.numpy()) > 0
        for name in ("obs", "next_obs", "actions", "rewards", "terminated", "dones", "pos"):
            np.testing.assert_array_equal(
                getattr(a.replay, name).numpy(), getattr(b.replay, name).numpy(), err_msg=name
            )
        for name in ("physics", "t", "key", "ep_return", "ep_length"):
            np.testing.assert_array_equal(
                getattr(a.state, name).numpy(), getattr(b.state, name).numpy(), err_msg=name
            )
        # Same parameters, seeds, env state and buffer: the next chunk is identical.
        for x in (agent, loaded):
            x.target_steps.assign(96 + 32)
        out_a = a.chunk_fn(tf.constant(32), tf.constant(False))
        out_b = b.chunk_fn(tf.constant(32), tf.constant(False))
        for x, y in zip(tf.nest.flatten(out_a), tf.nest.flatten(out_b)):
            np.testing.assert_array_equal(x.numpy(), y.numpy())
        loaded.learn(32, progress=False)  # a resumed run keeps counting from the checkpoint
        assert int(loaded.global_step.numpy()) == 128
        assert len(loaded.replay) == 96 + 32 + 32  # the direct chunk call above stored 32 more
    finally:
        agent.close()
        loaded.close()


def test_save_replay_false_keeps_the_buffer_out_of_the_checkpoint(tmp_path):
    agent = tiny_agent(
        "td3", "tf:Pendulum-v1", fill=0, logdir=tmp_path, learning_starts=16, save_replay=False
    )
    agent.learn(48, progress=False)
    path = agent.checkpointer.latest
    names = [name for name, _ in tf.train.list_variables(path)]
    assert not [x for x in names if x.startswith("replay/")]
    assert [x for x in names if x.startswith("ingraph_env/")]  # the env state is kept
    agent.close()
    loaded = Agent.load(agent.run_dir)
    try:
        assert len(loaded.replay) == 0 and int(loaded.global_step.numpy()) == 48
        updates = int(loaded.n_updates.numpy())
        loaded.learn(32, progress=False)  # refills 16 transitions, then updates again
        assert int(loaded.n_updates.numpy()) == updates + 32 - 15
    finally:
        loaded.close()


def test_same_seed_gives_identical_losses_and_parameters():
    from tensorflow.python.framework import config as tf_config  # to switch determinism off

    def run(seed):
        agent = tiny_agent(
            "sac", "tf:Pendulum-v1", fill=0, seed=seed, learning_starts=32, steps_per_iteration=40
        )
        losses = []
        agent.learn(
            120,
            progress=False,
            callback=lambda a, m: losses.append(
                {k: v for k, v in m.items() if k.startswith("train/") and "loss" in k}
            ),
        )
        params = [v.numpy() for vs in agent.flow_modules().values() for v in vs]
        agent.close()
        return losses, params

    was_on = tf_config.is_op_determinism_enabled()
    tf.config.experimental.enable_op_determinism()
    try:
        (l0, p0), (l1, p1), (l2, _) = run(0), run(0), run(1)
    finally:
        if not was_on:
            tf_config.disable_op_determinism()
    assert len(l0) == 4 and "train/critic_loss" in l0[-1]  # audit stop at 32, then chunks of 40
    assert l0 == l1  # exact float equality
    assert all(np.array_equal(x, y) for x, y in zip(p0, p1))
    assert l0 != l2


def test_unsupported_combinations_are_clear_errors():
    with pytest.raises(UnsupportedSpaceError, match="Box action"):
        get_agent_class("sac")("tf:CartPole-v1", tiny_config("sac"), logdir=None)


@pytest.mark.slow
def test_in_graph_sac_reaches_minus_250_on_pendulum_within_budget():
    """As tests/test_sac_learning.py (10k steps, learning rate 1e-3), fully in-graph on
    tf:Pendulum-v1; evaluated on Gymnasium's own Pendulum-v1."""
    from types import SimpleNamespace

    from rl_sever.core.evaluation import evaluate

    sac = get_agent_class("sac")
    cfg = sac.config_cls(seed=0, total_steps=10_000, learning_rate=1e-3, eval_episodes=0)
    agent = sac("tf:Pendulum-v1", cfg, logdir=None)
    try:
        agent.learn(progress=False)
        assert agent.ingraph.chunk_fn.experimental_get_tracing_count() == 1
        result = evaluate(
            SimpleNamespace(env_id="Pendulum-v1", predict=agent.predict), 10, seed=10_000
        )
    finally:
        agent.close()
    assert result["mean_reward"] >= -250, result
