"""A user's algorithm outside the packages (examples/reinforce.py) gets what the shipped pages
get: `rl-sever train my_module:MyAgent`, Python, the audit, checkpoints and resume, eval,
export, TensorBoard names and YAML configs; a bad class path or a page that breaks the
contract is one line and exit code 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from examples.reinforce import Reinforce, ReinforceConfig
from rl_sever import cli
from rl_sever.core.agent import Agent
from rl_sever.errors import ConfigError
from tests.helpers import read_event_tensors

ROOT = Path(__file__).resolve().parents[1]
PATH = "examples.reinforce:Reinforce"
TINY = ["--n-envs", "2", "--set", "n_steps=16", "--set", "eval_episodes=1", "--no-progress"]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    logdir = tmp_path_factory.mktemp("runs")
    assert cli.main(["train", PATH, "CartPole-v1", *TINY, "--steps", "64", "--logdir",
                     str(logdir)]) == 0
    (found,) = [p for p in logdir.iterdir() if p.is_dir()]
    return found


def test_cli_trains_a_class_path_into_a_run_folder(run_dir):
    assert run_dir.name.startswith("CartPole-v1__reinforce__0__")
    record = json.loads((run_dir / "config.json").read_text())
    assert record["algo"] == "reinforce" and record["agent_class"] == PATH
    assert record["config"]["n_steps"] == 16 and record["config"]["gae_lambda"] == 1.0
    events = read_event_tensors(run_dir)
    for tag in ("train/policy_gradient_loss", "train/value_loss", "rollout/ep_rew_mean"):
        assert [s for s, _ in events[tag]][-1] == 64, tag
    assert (run_dir / "checkpoints").is_dir()


def test_eval_resume_and_export_of_a_users_run(run_dir, capsys, tmp_path):
    code, out, _ = run(capsys, "eval", str(run_dir), "--episodes", "1")
    assert code == 0 and "reinforce on CartPole-v1, step 64" in out
    code, out, _ = run(capsys, "train", "--resume", str(run_dir), "--steps", "32", "--no-progress")
    assert code == 0 and "steps trained: 96" in out
    code, out, _ = run(capsys, "export", str(run_dir), str(tmp_path / "policy"))
    assert code == 0
    loaded = Agent.load(run_dir)
    assert type(loaded) is Reinforce
    obs = np.zeros((3, 4), np.float32)
    policy = tf.saved_model.load(str(tmp_path / "policy"))
    exported = next(iter(policy.signatures.values()))(observation=tf.constant(obs))
    np.testing.assert_array_equal(next(iter(exported.values())).numpy(), loaded.predict(obs))
    loaded.close()


def test_audit_of_a_users_algorithm_holds_its_contract(capsys):
    code, out, _ = run(capsys, "audit", PATH, "CartPole-v1", "--set", "n_steps=16",
                       "--set", "n_envs=2")
    assert code == 0, out
    assert "policy" in out and "verdict: OK" in out


def test_python_api_and_a_yaml_config(tmp_path):
    (tmp_path / "r.yaml").write_text("n_steps: 8\nn_envs: 2\nlearning_rate: 0.005\n")
    code = cli.main(["train", PATH, "CartPole-v1", "--config", str(tmp_path / "r.yaml"),
                     "--steps", "16", "--logdir", str(tmp_path / "runs"), "--no-progress",
                     "--set", "eval_episodes=0"])
    assert code == 0
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert json.loads((run_dir / "config.json").read_text())["config"]["learning_rate"] == 0.005
    agent = Reinforce("CartPole-v1", ReinforceConfig(n_steps=8, n_envs=2, eval_episodes=0),
                      logdir=None)
    before = [v.numpy().copy() for v in agent.flow_modules()["actor"]]
    agent.learn(32, progress=False)
    after = [v.numpy() for v in agent.flow_modules()["actor"]]
    assert any(not np.array_equal(a, b) for a, b in zip(before, after))
    agent.close()


@pytest.mark.parametrize("path,message", [
    ("no_such_module:Algo", "cannot import module 'no_such_module'"),
    ("examples.reinforce:Reinforse", "has no attribute 'Reinforse'. Did you mean"),
    ("examples.reinforce:ReinforceConfig", "not an agent class"),
    ("nope", "unknown algorithm 'nope'"),
])
def test_a_bad_class_path_is_one_line_and_exit_2(path, message, capsys, tmp_path):
    code, out, err = run(capsys, "train", path, "CartPole-v1", "--logdir", str(tmp_path))
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not any(tmp_path.iterdir())  # no run folder


BROKEN_PAGE = '''
from rl_sever import OnPolicyAgent

class NoConfig(OnPolicyAgent):
    algo = "no_config"
    config_cls = dict
'''


def test_a_page_that_breaks_the_contract_fails_at_construction(tmp_path):
    (tmp_path / "broken_page.py").write_text(BROKEN_PAGE)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="",
               PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "rl_sever.cli", "train", "broken_page:NoConfig",
                           "CartPole-v1", "--logdir", str(tmp_path / "runs")], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "must set `config_cls`" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists()
    with pytest.raises(ConfigError, match="must set `config_cls`"):
        sys.path.insert(0, str(tmp_path))
        try:
            from broken_page import NoConfig

            NoConfig("CartPole-v1")
        finally:
            sys.path.remove(str(tmp_path))


def test_the_docs_page_shows_the_examples_config():
    """docs/writing_an_algorithm.md's ReinforceConfig declares what examples/reinforce.py's
    does, with the same defaults: a reader copying the page gets the example's behaviour."""
    import ast
    import dataclasses
    import inspect

    page = (ROOT / "docs" / "writing_an_algorithm.md").read_text(encoding="utf-8")
    snippet = page.split("```python\n", 1)[1].split("```", 1)[0]
    cls = next(node for node in ast.parse(snippet).body
               if isinstance(node, ast.ClassDef) and node.name == "ReinforceConfig")
    shown = {node.target.id: ast.literal_eval(node.value) for node in cls.body
             if isinstance(node, ast.AnnAssign)}
    declared = {f.name: f.default for f in dataclasses.fields(ReinforceConfig)
                if f.name in inspect.get_annotations(ReinforceConfig)}
    assert shown == declared and "normalize_advantage" in shown
