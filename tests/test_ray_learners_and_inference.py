"""Ray learner processes for multiworker runs (config learners), central inference for env
runners (runner_inference: central) and IMPALA's asynchronous runners (rl_sever.runners)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rl_sever import cli
from rl_sever.errors import ConfigError
from tests.helpers import make_agent, tiny_agent, tiny_config

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_impala_runners_act_asynchronously_and_log_their_lag(local_ray, tmp_path):
    from rl_sever.core.curves import read_scalars

    agent = make_agent("impala", "CartPole-v1", n_envs=4, n_steps=8, runners=2,
                       logdir=tmp_path, log_every_steps=0)
    agent.learn(640, progress=False)
    assert int(agent.global_step.numpy()) == 640
    collector = agent.collector
    assert collector.version == 20  # one update per batch of two rollouts
    run_dir = agent.run_dir
    agent.close()
    lags = read_scalars(run_dir)["runners/policy_lag_max"]
    # The first batch is on-policy; later ones were collected while the learner updated.
    assert lags[0][1] == 0 and max(v for _, v in lags) >= 1


def test_ray_started_learners_train_one_model_and_the_cli_resumes_them(local_ray, tmp_path,
                                                                      capsys):
    """One real launch of two learners, then a resume through the CLI: another two."""
    from agents import PPO
    from rl_sever.runners.learners import train_learners

    cfg = tiny_config("ppo", learners=2, distribute="multiworker", total_steps=128,
                      eval_episodes=0, checkpoint_every=64)
    results = train_learners(PPO, "CartPole-v1", cfg, logdir=tmp_path)
    assert [r["chief"] for r in results] == [True, False]
    assert [r["data_seed"] for r in results] == [0, 2]  # distinct envs per worker
    assert {r["steps"] for r in results} == {128}  # both workers' steps counted
    assert results[0]["weights"] == results[1]["weights"]  # all-reduced: one model
    run_dir = results[0]["run_dir"]
    assert list(tmp_path.iterdir()) == [Path(run_dir)]
    assert (Path(run_dir) / "checkpoints" / "ckpt-128.index").exists()
    # The run folder records `learners`: the CLI resumes it on learner processes again.
    assert cli.main(["train", "--resume", run_dir, "--steps", "64", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "2 learner processes on Ray; weights identical on all: True" in out
    assert "steps trained: 192" in out


def test_learners_need_multiworker():
    with pytest.raises(ConfigError, match="set distribute=multiworker"):
        tiny_config("ppo", learners=2).validate()


def test_cli_starts_ray_learners_for_a_config_with_learners(tmp_path, capsys, monkeypatch):
    """The CLI's fresh run goes to the learner processes with the run's config (the processes
    themselves: the test above)."""
    from agents import PPO

    calls = []

    def fake_learners(klass, env_id, cfg, logdir, run_dir, steps, overrides):
        calls.append((klass, env_id, cfg.learners, cfg.n_envs, logdir, run_dir, steps))
        return [{"weights": "w", "steps": 64, "run_dir": "R", "last_eval": None}] * 2

    monkeypatch.setattr(PPO, "train_learners", staticmethod(fake_learners))
    args = ["train", "ppo", "CartPole-v1", "--no-preset", "--steps", "64", "--logdir",
            str(tmp_path), "--no-progress", "--set", "distribute=multiworker",
            "--set", "learners=2", "--set", "n_envs=2", "--set", "n_steps=16",
            "--set", "batch_size=16", "--set", "eval_episodes=0"]
    assert cli.main(args) == 0
    assert calls == [(PPO, "CartPole-v1", 2, 2, str(tmp_path), None, None)]
    out = capsys.readouterr().out
    assert "2 learner processes on Ray; weights identical on all: True" in out
    assert "steps trained: 64" in out and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("algo", ["ppo", "sac"])
def test_central_inference_acts_for_every_runner(local_ray, algo):
    extra = ({"n_steps": 16} if algo == "ppo"
             else {"learning_starts": 32, "steps_per_iteration": 16})
    agent = tiny_agent(algo, fill=0, n_envs=4, runners=2, runner_inference="central", **extra)
    agent.learn(256, progress=False)
    assert int(agent.global_step.numpy()) == 256
    group = agent.collector.group
    stats = ray.get(group.server.stats.remote())
    # One request per runner per vector step (after SAC's uniform warm-up), in batched calls.
    steps_acted = 256 // 4 - (32 // 4 if algo == "sac" else 0)
    assert stats["requests"] == 2 * steps_acted
    assert steps_acted <= stats["calls"] < stats["requests"]
    # The runners hold the server's handle without importing TensorFlow; the server has it.
    assert group.without_tensorflow
    for pid in group.pids():
        maps = Path(f"/proc/{pid}/maps")
        if maps.exists():
            assert "tensorflow" not in maps.read_text()
    agent.close()
