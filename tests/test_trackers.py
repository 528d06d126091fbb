"""Experiment trackers beside TensorBoard: MLflow (a local SQLite store) and W&B (offline mode)
receive the config, the scalars, the flow matrix and the best policy; a resumed run continues
its tracker runs; an unreachable or failing tracker warns once and training goes on."""

from __future__ import annotations

import importlib.util
import json
import warnings

import pytest
from mlflow.tracking import MlflowClient

from agents import PPO
from rl_sever.core import trackers as trackers_module
from rl_sever.core.runs import resume
from rl_sever.core.trackers import IDS_FILE, Trackers, TrackerWarning
from rl_sever.errors import ConfigError
from tests.helpers import tiny_config


def train(tmp_path, steps=64, **overrides):
    cfg = tiny_config("ppo", total_steps=steps, eval_every=32, **overrides)
    agent = PPO("CartPole-v1", cfg, logdir=tmp_path / "runs")
    agent.learn(progress=False)
    agent.close()
    return agent.run_dir


def test_mlflow_gets_config_scalars_matrix_and_best_and_resumes_its_run(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path / "..")  # nothing may land in the working folder
    run = train(tmp_path, trackers=["mlflow"], tracker_project="tests")
    client = MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    (found,) = client.search_runs([client.get_experiment_by_name("tests").experiment_id])
    assert found.info.run_name == run.name and found.info.status == "FINISHED"
    assert found.data.params["n_steps"] == "16" and found.data.params["algo"] == "ppo"
    history = client.get_metric_history(found.info.run_id, "eval/mean_reward")
    assert [m.step for m in history] == [32, 64]
    records = json.loads((run / "evaluations.json").read_text())
    assert [m.value for m in history] == [r["mean_reward"] for r in records]
    artifacts = {a.path for a in client.list_artifacts(found.info.run_id, "best")}
    assert {"best/config.json", "best/best.json", "best/checkpoints"} <= artifacts
    matrix = client.download_artifacts(found.info.run_id, "audit/flow_matrix.md", str(tmp_path))
    assert "policy" in open(matrix).read()
    again = resume(run, steps=32)
    again.continue_learning(progress=False)
    again.close()
    (same,) = client.search_runs([client.get_experiment_by_name("tests").experiment_id])
    assert same.info.run_id == json.loads((run / IDS_FILE).read_text())["mlflow"]
    history = client.get_metric_history(same.info.run_id, "eval/mean_reward")
    assert [m.step for m in history] == [32, 64, 96]
    assert (tmp_path / "runs" / "mlartifacts").is_dir() and not (tmp_path / ".." / "mlruns").exists()


def test_wandb_offline_writes_its_run_into_the_run_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    run = train(tmp_path, steps=32, trackers=["wandb"])
    # W&B's service writes the offline file to the end when it shuts down, as at the process's
    # exit (the CLI runs the exit handlers); in this process, shut it down as that exit would.
    import wandb

    wandb.teardown()
    ids = json.loads((run / IDS_FILE).read_text())
    (offline,) = (run / "wandb").glob(f"offline-run-*-{ids['wandb']}")
    (data,) = offline.glob("*.wandb")
    assert data.stat().st_size > 1000
    assert "eval/mean_reward" in data.read_bytes().decode("latin-1")


def test_unreachable_or_failing_trackers_warn_once_and_training_goes_on(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = train(tmp_path, steps=32, trackers=["wandb", "mlflow"])
    messages = [str(w.message) for w in caught if issubclass(w.category, TrackerWarning)]
    assert len(messages) == 2 and all("cannot be reached" in m for m in messages)
    assert list(run.glob("events.out.tfevents.*")) and (run / "best").is_dir()

    class Flaky:  # reachable, then failing at its second batch of scalars
        name, run_id, calls = "flaky", "x", []

        def __init__(self, *args):
            pass

        def scalars(self, values, step):
            self.calls.append(step)
            if len(self.calls) == 2:
                raise ConnectionError("lost the server")

        def text(self, *args):
            pass

        def close(self):
            pass

    monkeypatch.setitem(trackers_module.KINDS, "mlflow", Flaky)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(tmp_path, steps=96, trackers=["mlflow"])
    messages = [str(w.message) for w in caught if issubclass(w.category, TrackerWarning)]
    assert messages == ["the flaky tracker failed (lost the server); training goes on "
                        "without it"]
    assert Flaky.calls == [32, 64]  # dropped after the failure: nothing more sent to it


def test_unknown_or_missing_trackers(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="unknown tracker 'tensorboardX'"):
        tiny_config("ppo", trackers=["tensorboardX"])
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.warns(TrackerWarning, match=r"not installed \(pip install 'rl_sever\[wandb\]'\)"):
        Trackers(["wandb"], tmp_path, "p", {})
