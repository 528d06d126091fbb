"""Acting needs no training code: eval, export and predict of a run trained with loss terms
from a user's module neither need nor import that module: Agent.load (and agents.load)
imports it only with import_losses=True, which training needs."""

from __future__ import annotations

import sys
import textwrap

import numpy as np
import pytest

import agents
from rl_sever import cli
from rl_sever.core.agent import Agent
from rl_sever.errors import ConfigError

OBS = np.random.default_rng(0).normal(size=(256, 4)).astype(np.float32) * [1, 1, 0.2, 1]
USER_MODULE = '''
import pathlib
import tensorflow as tf
from rl_sever.isolation import sever
from rl_sever.objective import LossTerm, critic_modules, loss_term

pathlib.Path(__file__).with_name("imported").write_text("yes")  # what a foreign module could do


@loss_term(trains=critic_modules)
def huber_value(batch, out):
    err = tf.abs(out["values"] - sever(batch["returns"]))
    quadratic = tf.minimum(err, 1.0)
    return tf.reduce_mean(0.5 * tf.square(quadratic) + (err - quadratic))


class Penalty(LossTerm):
    """A term with a variable of its own (saved in the checkpoint)."""

    def __init__(self):
        super().__init__("penalty", trains=critic_modules)

    def build(self, agent):
        self.scale = tf.Variable(0.5, name="penalty_scale")
        return {}

    def compute(self, batch, out):
        return self.scale * tf.reduce_mean(tf.square(out["values"]))
'''


@pytest.fixture
def user_run(tmp_path, monkeypatch):
    """A PPO run trained with two terms from `userpkg.mylosses`; then the package is gone."""
    pkg = tmp_path / "src" / "userpkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "mylosses.py").write_text(textwrap.dedent(USER_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    argv = ("train ppo CartPole-v1 --no-preset --n-envs 2 --steps 64 --no-progress --set n_steps=16 "
            "--set batch_size=16 --set eval_episodes=0 --set audit=false").split()
    argv += ["--loss", "value=userpkg.mylosses:huber_value", "--loss", "+userpkg.mylosses:Penalty@0.1",
             "--logdir", str(tmp_path / "runs")]
    assert cli.main(argv) == 0
    (run_dir,) = (tmp_path / "runs").iterdir()
    trained = Agent.load(run_dir, import_losses=True)  # the module still there: the reference
    reference = trained.predict(OBS)
    trained.close()
    marker = pkg / "imported"
    assert marker.read_text() == "yes"
    marker.unlink()
    for name in [m for m in sys.modules if m.startswith("userpkg")]:
        del sys.modules[name]  # for good: the next test imports its own copy
    monkeypatch.syspath_prepend(str(tmp_path / "elsewhere"))
    sys.path.remove(str(tmp_path / "src"))
    return run_dir, marker, reference


def test_eval_and_export_need_no_loss_module(user_run, tmp_path, capsys):
    run_dir, marker, _ = user_run
    assert cli.main(["eval", str(run_dir), "--episodes", "2"]) == 0
    assert cli.main(["export", str(run_dir), str(tmp_path / "policy"), "--check", "64"]) == 0
    assert "mean return" in capsys.readouterr().out
    assert not marker.exists() and not any(m.startswith("userpkg") for m in sys.modules)
    assert (tmp_path / "policy" / "saved_model.pb").is_file()


def test_acting_load_predicts_as_the_trained_agent_and_refuses_to_train(user_run):
    run_dir, marker, reference = user_run
    with pytest.raises(ConfigError, match="cannot import module 'userpkg.mylosses'"):
        Agent.load(run_dir, import_losses=True)  # training needs the module
    agent = agents.load(run_dir)
    assert agent.skipped_losses == ["value=userpkg.mylosses:huber_value",
                                    "+userpkg.mylosses:Penalty@0.1"]
    np.testing.assert_array_equal(agent.predict(OBS), reference)
    assert set(np.unique(reference)) == {0, 1}  # a decision, not a constant
    with pytest.raises(ConfigError, match="to train it, load it with Agent.load\\(run_dir, "
                                          "import_losses=True\\)"):
        agent.learn(16, progress=False)
    with pytest.raises(ConfigError, match="to save it"):  # a checkpoint would lose the terms
        agent.save()
    agent.close()
    assert not marker.exists()
