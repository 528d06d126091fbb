"""In-graph on-policy training on TF-native envs (rl_sever.onpolicy.ingraph): the fused rollout+update
iteration traces once, its rollout has the Gymnasium path's semantics and episode statistics,
the audit runs on the first rollout, checkpoints carry the env state, and A2C/PPO run on
discrete and continuous tf: envs (also under XLA) and from the CLI. Learning: test_ingraph_learning."""

from __future__ import annotations

import json
import math

import gymnasium as gym
import numpy as np
import pytest

from envs import EpisodeStats, episode_stats
from envs.tfnative import TFNativeVectorEnv, get
from rl_sever import cli
from rl_sever.core.agent import Agent
from rl_sever.core.ingraph_env import record_episodes
from rl_sever.errors import ConfigError
from rl_sever.onpolicy.ingraph import InGraphCollector
from rl_sever.onpolicy.rollout_buffer import Rollout
from tests.helpers import make_agent, read_event_tensors


def finite(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if not math.isfinite(v)}


def test_fused_iteration_traces_once_while_schedules_and_switches_change(tmp_path):
    agent = make_agent(
        "ppo",
        "tf:CartPole-v1",
        {
            "lr_schedule": "linear",
            "clip_schedule": "linear",
            "total_steps": 6 * 32,
            "eval_episodes": 0,
        },
        logdir=tmp_path,
    )
    trainer = agent.ingraph
    seen = []

    def record(agent, metrics):
        seen.append(
            (
                trainer.iteration_fn.experimental_get_tracing_count(),
                float(agent.optimizer.learning_rate.numpy()),
                dict(metrics),
            )
        )
        agent.loss_weights["entropy"].assign(0.01 * len(seen))
        agent.optimizer.set_frozen("critic", len(seen) % 2 == 1)

    try:
        agent.learn(progress=False, callback=record)
        agent.optimizer.set_frozen("critic", False)
        agent.learn(2 * 32, progress=False, callback=record)  # a second learn() call
    finally:
        agent.close()
    assert len(seen) == 8
    # Iteration 1's rollout is collected alone for the audit, then every iteration is fused.
    assert [count for count, _, _ in seen] == [1] * 8
    assert "audit/gradient_flow" in read_event_tensors(agent.run_dir)
    assert set(seen[0][2]) == set(seen[1][2])  # fused metrics map to the same names
    assert trainer.iteration_fn.experimental_get_tracing_count() == 1
    assert trainer.rollout_fn.experimental_get_tracing_count() == 1
    assert agent.train_fn.experimental_get_tracing_count() == 0  # the update: fused only
    assert agent.act_fn.experimental_get_tracing_count() == 0  # never steps from Python
    lrs = [lr for _, lr, _ in seen[:6]]
    assert all(a > b for a, b in zip(lrs, lrs[1:])), lrs
    last = seen[-1][2]
    for key in ("train/loss", "train/approx_kl", "train/clip_fraction", "rollout/ep_rew_mean"):
        assert key in last, sorted(last)
    assert not finite(last)


def test_rollout_matches_stepping_the_env_and_episode_stats_match_the_gymnasium_view():
    agent = make_agent("a2c", "tf:CartPole-v1", {"n_envs": 4, "n_steps": 40})
    try:
        # A fresh collector's first call hands the loop the rollout to audit and leaves the
        # envs as they were; then two rollouts of the trainer, the env state carried between.
        collector = agent.make_collector()
        assert isinstance(collector, InGraphCollector)
        collected = collector.collect()
        assert collected.steps == 160 and isinstance(collected.batch, Rollout)
        assert collected.metrics is None and collected.update is not None
        audited = {k: v.numpy() for k, v in collected.batch.items()}
        batches = []
        for _ in range(2):
            batch, episodes = agent.ingraph.rollout_fn()
            record_episodes(collector.stats, episodes)
            batches.append({k: v.numpy() for k, v in batch.items()})
        for k in audited:  # the audited rollout is the one the next iteration collects
            np.testing.assert_array_equal(audited[k], batches[0][k])
        stats = episode_stats(agent.env)
        ingraph_episodes = stats.pop_finished()
        assert len(ingraph_episodes) >= 4
        batch = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}

        # Re-simulate from the same start state with the recorded actions, eagerly.
        env = get("CartPole-v1")
        state = env.reset(agent.config.seed, 4)
        obs = env.observe(state)
        for t in range(80):
            np.testing.assert_array_equal(batch["obs"][t], obs.numpy())
            state, obs, reward, terminated, truncated, final = env.step_autoreset(
                state, batch["actions"][t]
            )
            np.testing.assert_array_equal(batch["next_obs"][t], final.numpy())  # true last obs
            np.testing.assert_array_equal(batch["rewards"][t], reward.numpy())
            np.testing.assert_array_equal(batch["terminated"][t], terminated.numpy())
            np.testing.assert_array_equal(batch["dones"][t], (terminated | truncated).numpy())
        assert batch["dones"].any()

        # The same actions through the Gymnasium vector view + EpisodeStats (the Python path's
        # bookkeeping) give exactly the episodes the in-graph accumulators reported.
        view = EpisodeStats(TFNativeVectorEnv(env, 4))
        view.reset(seed=agent.config.seed)
        for t in range(80):
            view.step(batch["actions"][t].astype(np.int64))
        assert view.pop_finished() == ingraph_episodes
    finally:
        agent.close()


def test_checkpoint_restores_the_env_state_and_resume_continues_identically(tmp_path):
    agent = make_agent(
        "a2c", "tf:CartPole-v1", logdir=tmp_path, eval_episodes=0, audit=False, total_steps=96
    )
    agent.learn(progress=False)  # saves at the end
    loaded = Agent.load(agent.run_dir)
    try:
        a, b = agent.ingraph.state, loaded.ingraph.state
        assert bool(b.started.numpy())
        for name in ("physics", "t", "key", "ep_return", "ep_length"):
            np.testing.assert_array_equal(getattr(a, name).numpy(), getattr(b, name).numpy())
        assert np.abs(b.physics.numpy()).sum() > 0
        # Same parameters, RNG and env state: the next fused iteration is identical.
        out_a, ep_a = agent.ingraph.iteration_fn()
        out_b, ep_b = loaded.ingraph.iteration_fn()
        for k in out_a:
            np.testing.assert_allclose(out_a[k].numpy(), out_b[k].numpy(), rtol=1e-6, err_msg=k)
        for k in ep_a:
            np.testing.assert_array_equal(ep_a[k].numpy(), ep_b[k].numpy())
        np.testing.assert_array_equal(a.physics.numpy(), b.physics.numpy())
        loaded.learn(32, progress=False)  # a resumed run keeps counting from the checkpoint
        assert int(loaded.global_step.numpy()) == 128
    finally:
        agent.close()
        loaded.close()


def test_a2c_runs_in_graph_on_a_continuous_env():
    # Pendulum's 200-step episodes finish within the two iterations.
    agent = make_agent("a2c", "tf:Pendulum-v1", {"n_steps": 100, "total_steps": 400})
    history = []
    try:
        agent.learn(progress=False, callback=lambda agent, m: history.append(dict(m)))
        assert agent.ingraph is not None
        assert agent.ingraph.iteration_fn.experimental_get_tracing_count() == 1
        last = history[-1]
        assert "train/std" in last
        assert "rollout/ep_rew_mean" in last, sorted(last)
        assert not finite(last)
        assert math.isfinite(agent.last_eval["mean_reward"])  # evaluate() builds tf: envs too
    finally:
        agent.close()


def test_jit_compile_runs_the_fused_iteration_under_xla():
    agent = make_agent(
        "a2c",
        "tf:CartPole-v1",
        {"jit_compile": True, "audit": False, "total_steps": 3 * 32, "eval_episodes": 0},
    )
    history = []
    try:
        agent.learn(progress=False, callback=lambda agent, m: history.append(dict(m)))
        assert agent.ingraph.iteration_fn.experimental_get_tracing_count() == 1
        assert agent.train_fn.experimental_get_tracing_count() == 0  # no audit: all fused
        assert len(history) == 3 and not finite(history[-1])
    finally:
        agent.close()


def test_the_audit_changes_nothing_and_the_update_is_traced_only_in_the_fused_call(tmp_path):
    """The audited first iteration collects its rollout alone, puts the envs and the sampler
    back, and the fused call collects it again and trains on it: a run with the audit and one
    without end with identical weights, counters, env state and episode statistics, and the
    update is traced once, in the fused call (with XLA here), never on its own."""
    runs = {}
    for audit in (True, False):
        agent = make_agent(
            "ppo",
            "tf:CartPole-v1",
            {"jit_compile": True, "audit": audit, "total_steps": 3 * 32, "eval_episodes": 0},
            logdir=tmp_path / str(audit),
        )
        history = []
        try:
            agent.learn(progress=False, callback=lambda agent, m, h=history: h.append(dict(m)))
            assert agent.train_fn.experimental_get_tracing_count() == 0
            assert agent.train_fn_for(False).experimental_get_tracing_count() == 0
            assert agent.ingraph.iteration_fn.experimental_get_tracing_count() == 1
            assert agent.ingraph.rollout_fn.experimental_get_tracing_count() == int(audit)
            assert len(history) == 3 and all(np.isfinite(h["train/loss"]) for h in history)
            assert ("audit/gradient_flow" in read_event_tensors(agent.run_dir)) == audit
            state, stats = agent.ingraph.state, episode_stats(agent.env)
            runs[audit] = (
                [v.numpy() for v in agent.model.trainable_variables],
                [v.numpy() for v in (*state.variables, agent.seed_counter, agent.global_step)],
                [list(stats._recent), stats.total_episodes],
                [h["train/loss"] for h in history],
            )
        finally:
            agent.close()
    for got, want in zip(runs[True], runs[False]):
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)


def test_normalisation_with_a_tf_env_is_a_config_error():
    with pytest.raises(ConfigError, match="tf:"):
        make_agent("ppo", "tf:CartPole-v1", {"normalize_obs": True})


def test_other_wrappers_fall_back_to_stepping_the_gymnasium_view():
    env = gym.wrappers.vector.RecordEpisodeStatistics(TFNativeVectorEnv(get("CartPole-v1"), 2))
    agent = make_agent("a2c", env)
    try:
        assert agent.ingraph is None
        assert not isinstance(agent.make_collector(), InGraphCollector)
    finally:
        agent.close()


def test_cli_trains_a2c_on_tf_acrobot_with_the_gymnasium_ids_preset(tmp_path, capsys):
    code = cli.main(
        [
            "train",
            "a2c",
            "tf:Acrobot-v1",
            "--steps",
            "160",
            "--logdir",
            str(tmp_path),
            "--set",
            "eval_episodes=1",
            "--no-progress",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "preset" in out and "steps trained: 160" in out
    (run_dir,) = list(tmp_path.iterdir())
    config = json.loads((run_dir / "config.json").read_text())["config"]
    assert config["n_envs"] == 16 and not config["normalize_obs"]  # preset minus normalisation
    events = read_event_tensors(run_dir)
    for tag in ("train/loss", "train/value_loss", "eval/mean_reward", "audit/gradient_flow"):
        assert tag in events, sorted(events)
    assert all(np.isfinite(v).all() for _, v in events["train/loss"])
    code = cli.main(
        [
            "train",
            "a2c",
            "tf:Acrobot-v1",
            "--steps",
            "160",
            "--logdir",
            str(tmp_path),
            "--set",
            "normalize_obs=true",
            "--no-progress",
        ]
    )
    assert code == 2
    assert "tf:" in capsys.readouterr().err
