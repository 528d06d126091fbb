"""Save / load / resume round trips through the run folder (TF checkpoints + config.json)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import tensorflow as tf

from rl_sever.config.fields import to_dict
from rl_sever.core.agent import Agent
from tests.helpers import ALGOS, ENV_FOR, ONPOLICY, make_agent, read_event_tensors


def trained(algo, env_id, tmp_path, overrides=None):
    agent = make_agent(algo, env_id, overrides, logdir=tmp_path, eval_episodes=0)
    agent.learn(None if algo in ONPOLICY else 128, progress=False)  # off-policy: updates run
    return agent


def observations(agent, n=64, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, *agent.obs_shape)).astype(np.float32)


def all_state(agent) -> list[np.ndarray]:
    variables = [v for vs in agent.flow_modules().values() for v in vs]
    for module_optimizer in agent.module_optimizers():
        for opt in module_optimizer.optimizers.values():
            variables += list(opt.variables)
    variables += [agent.global_step, agent.iteration, agent.seed_counter]
    # And every other variable the checkpoint holds (running statistics, counters, ...).
    variables += [v for v in tf.train.TrackableView(agent.checkpoint).descendants()
                  if isinstance(v, tf.Variable)]
    return [np.array(v.numpy(), copy=True) for v in variables]


@pytest.mark.parametrize("algo,env_id", [("a2c", "Pendulum-v1")]
                         + [(algo, ENV_FOR[algo]) for algo in ALGOS])
def test_load_restores_everything_and_gives_identical_greedy_actions(algo, env_id, tmp_path):
    agent = trained(algo, env_id, tmp_path)
    loaded = Agent.load(agent.run_dir)
    try:
        assert type(loaded) is type(agent)
        assert loaded.config == agent.config
        obs = observations(agent)
        expected = agent.predict(obs)
        got = loaded.predict(obs)
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)  # bit-identical, also for Box actions
        # Parameters, optimizer slots, counters and the sampling RNG are restored exactly.
        for a, b in zip(all_state(agent), all_state(loaded), strict=True):
            np.testing.assert_array_equal(a, b)
        if algo == "ppo":
            assert float(loaded.clip_range.numpy()) == float(agent.clip_range.numpy())
    finally:
        agent.close()
        loaded.close()


def test_resume_continues_step_counter_and_event_steps(tmp_path):
    agent = make_agent("ppo", "CartPole-v1", logdir=tmp_path, eval_episodes=1)
    agent.learn(progress=False)  # 2 iterations of 32 steps
    agent.close()
    run_dir = agent.run_dir
    assert int(agent.global_step.numpy()) == 64

    resumed = Agent.load(run_dir)
    try:
        assert int(resumed.global_step.numpy()) == 64
        assert int(resumed.iteration.numpy()) == 2
        resumed.learn(64, progress=False)
        assert int(resumed.global_step.numpy()) == 128
        assert int(resumed.iteration.numpy()) == 4
    finally:
        resumed.close()
    assert resumed.run_dir == run_dir
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 2  # same run folder, two writers

    events = read_event_tensors(run_dir)
    scalars = {tag: [s for s, _ in points] for tag, points in events.items()
               if points[0][1].shape == () and points[0][1].dtype.kind == "f"}
    assert "train/loss" in scalars
    for tag, steps in scalars.items():
        assert all(a < b for a, b in zip(steps, steps[1:])), (tag, steps)
    assert scalars["train/loss"] == [32, 64, 96, 128]
    iterations = [float(v) for _, v in events["time/iterations"]]
    assert iterations == [1.0, 2.0, 3.0, 4.0]
    assert scalars["eval/mean_reward"] == [64, 128]
    # Written once per run, not again on resume.
    assert len(events["config"]) == 1
    assert len(events["audit/gradient_flow"]) == 1


@pytest.fixture(scope="module")
def normalized_run(tmp_path_factory):
    """A finished PPO run with observation and reward normalisation (shared by two tests)."""
    agent = trained("ppo", "CartPole-v1", tmp_path_factory.mktemp("runs"),
                    {"normalize_obs": True, "normalize_reward": True})
    agent.close()
    return agent


def test_normalizer_statistics_are_restored(normalized_run):
    agent = normalized_run
    loaded = Agent.load(agent.run_dir)
    try:
        src, dst = agent.normalizer, loaded.normalizer
        assert dst is not None and dst.obs_rms is not None and dst.ret_rms is not None
        for a, b in ((src.obs_rms, dst.obs_rms), (src.ret_rms, dst.ret_rms)):
            assert a.count > 1 and not np.all(a.mean == 0)  # statistics were really collected
            # Checkpoints hold the statistics as float64: the round trip is lossless.
            np.testing.assert_array_equal(b.mean, a.mean)
            np.testing.assert_array_equal(b.var, a.var)
            assert b.count == a.count
        obs = observations(agent)
        np.testing.assert_array_equal(loaded.normalize_obs(obs), agent.normalize_obs(obs))
        np.testing.assert_array_equal(loaded.predict(obs), agent.predict(obs))
    finally:
        loaded.close()


def test_loaded_agent_normalises_bit_identically(normalized_run):
    agent = normalized_run
    loaded = Agent.load(agent.run_dir)
    try:
        obs = observations(agent, n=256)
        np.testing.assert_array_equal(loaded.normalize_obs(obs), agent.normalize_obs(obs))
    finally:
        loaded.close()


def test_run_folder_holds_tf_checkpoints_and_json_config_only(normalized_run):
    agent = normalized_run
    run_dir = agent.run_dir
    assert re.fullmatch(r"CartPole-v1__ppo__0__\d{8}-\d{6}(-\d+)?", run_dir.name)
    record = json.loads((run_dir / "config.json").read_text())
    assert record["algo"] == "ppo" and record["env_id"] == "CartPole-v1"
    assert record["config"] == to_dict(agent.config)

    files = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    pattern = re.compile(r"checkpoint|ckpt-\d+\.index|ckpt-\d+\.data-\d{5}-of-\d{5}")
    assert files and all(pattern.fullmatch(f) for f in files), files
    state = (run_dir / "checkpoints" / "checkpoint").read_text()  # text proto, not pickle
    assert "model_checkpoint_path" in state
    prefix = tf.train.latest_checkpoint(str(run_dir / "checkpoints"))
    names = [name for name, _ in tf.train.list_variables(prefix)]
    assert any("normalizer" in n for n in names) and any("model" in n for n in names)
    assert any("global_step" in n for n in names) and any("optimizer" in n for n in names)
    # Nothing else in the run folder: event files, config.json, TF checkpoints (no pickle) and
    # the writer's lock (one text line).
    assert (run_dir / ".lock").read_text().startswith("pid ")
    for path in run_dir.rglob("*"):
        rel = path.relative_to(run_dir).as_posix()
        allowed = (rel in ("config.json", "checkpoints", ".lock")
                   or rel.startswith("events.out.tfevents.")
                   or (rel.startswith("checkpoints/") and pattern.fullmatch(path.name)))
        assert allowed, rel
