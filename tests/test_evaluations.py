"""Evaluation during training: records, the best policy in best/ (kept across a resume), the
stopping rules as config and as callbacks, and best/ as a run folder eval and export accept.
The evaluations' returns are scripted (rl_sever.core.evaluations.evaluate replaced), so each
rule meets the exact sequence it must act on."""

from __future__ import annotations

import json

import pytest

from agents import PPO
from rl_sever import cli
from rl_sever.core import evaluations as evals_module
from rl_sever.core.callbacks import (
    StopTrainingOnNoModelImprovement,
    StopTrainingOnRewardThreshold,
    evaluations_without_improvement,
)
from rl_sever.core.curves import read_scalars
from rl_sever.core.evaluations import BEST_DIR, EVALUATIONS_FILE, read_best
from rl_sever.core.runs import resume
from rl_sever.errors import ConfigError
from tests.helpers import tiny_config

STEP = 32  # env steps per iteration of the tiny config (2 envs x 16 steps)


@pytest.fixture()
def scripted(monkeypatch):
    """Make the evaluations return the given means, in order; returns the list of calls."""
    calls = []

    def script(*returns):
        values = iter(returns)

        def evaluate(agent, episodes, *, seed):
            calls.append(int(agent.global_step.numpy()))
            mean = float(next(values))
            return {"mean_reward": mean, "std_reward": 0.0, "mean_ep_length": mean + 1,
                    "episodes": episodes}

        monkeypatch.setattr(evals_module, "evaluate", evaluate)
        return calls

    return script


def agent_with(tmp_path, **overrides):
    cfg = tiny_config("ppo", eval_every=STEP, **overrides)
    return PPO("CartPole-v1", cfg, logdir=tmp_path)


def test_best_policy_is_kept_and_survives_a_resume(tmp_path, scripted):
    calls = scripted(10, 30, 20, 25, 40)
    agent = agent_with(tmp_path, total_steps=3 * STEP)
    agent.learn(progress=False)
    run = agent.run_dir
    agent.close()
    assert calls == [32, 64, 96]  # no extra end-of-run evaluation: one was made at step 96
    records = json.loads((run / EVALUATIONS_FILE).read_text())
    assert [(r["step"], r["mean_reward"]) for r in records] == [(32, 10), (64, 30), (96, 20)]
    assert read_best(run / BEST_DIR) == {"step": 64, "mean_reward": 30.0, "run": run.name}
    scalars = read_scalars(run)
    assert scalars["eval/best_mean_reward"] == [(32, 10.0), (64, 30.0), (96, 30.0)]
    assert scalars["eval/mean_ep_length"][-1] == (96, 21.0)
    # An evaluation past the checkpoint (a crash lost those steps) is dropped on resume; the
    # best return stays the bar: 25 does not replace it, 40 does.
    (run / EVALUATIONS_FILE).write_text(json.dumps([*records, {**records[-1], "step": 999}]))
    again = resume(run, steps=2 * STEP)
    again.continue_learning(progress=False)
    again.close()
    steps = [r["step"] for r in json.loads((run / EVALUATIONS_FILE).read_text())]
    assert steps == [32, 64, 96, 128, 160]
    assert read_best(run / BEST_DIR)["step"] == 160
    assert not (run / "best.tmp").exists() and not (run / "best.old").exists()


def test_best_folder_is_for_eval_and_export_not_for_resume(tmp_path, scripted, capsys):
    scripted(5, 7)
    agent = agent_with(tmp_path, total_steps=2 * STEP)
    agent.learn(progress=False)
    best = agent.run_dir / BEST_DIR
    agent.close()
    loaded = PPO.load(best)
    assert int(loaded.global_step.numpy()) == 64
    loaded.close()
    assert cli.main(["eval", str(best), "--episodes", "1"]) == 0
    assert "step 64" in capsys.readouterr().out
    assert cli.main(["train", "--resume", str(best)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "holds the best policy of run" in err


def test_stopping_rules_from_the_config(tmp_path, scripted):
    calls = scripted(10, 30)
    agent = agent_with(tmp_path, total_steps=20 * STEP, stop_reward=25)
    agent.learn(progress=False)
    assert int(agent.global_step.numpy()) == 64 and calls == [32, 64]
    assert agent.stop_reason == ("evaluation at step 64 returned 30.00, reaching stop_reward 25")
    agent.close()
    calls.clear()
    scripted(10, 30, 20, 25, 99)
    agent = agent_with(tmp_path, total_steps=20 * STEP, stop_patience=2)
    agent.learn(progress=False)
    assert calls == [32, 64, 96, 128] and "2 evaluations in a row without beating" in agent.stop_reason
    agent.close()
    with pytest.raises(ConfigError, match="set eval_every"):
        tiny_config("ppo", stop_reward=1.0)


def test_stopping_rules_as_callbacks(tmp_path, scripted):
    scripted(1, 2, 3, 1, 2, 3, 2, 9, 0, 0, 0, 0)
    seen = []
    threshold = StopTrainingOnRewardThreshold(50)
    patience = StopTrainingOnNoModelImprovement(2, min_evals=4)  # SB3's semantics
    agent = agent_with(tmp_path, total_steps=20 * STEP)
    agent.learn(progress=False, callback=[threshold, patience,
                                          lambda a, m: seen.append(len(a.evaluations))])
    # 1, 2, 3 improve; the 4th (1) is not counted (min_evals 4); 2, 3, 2 do not beat 3: a count
    # of 3 > 2 at the 7th evaluation
    assert int(agent.global_step.numpy()) == 7 * STEP
    assert agent.stop_reason == ("3 evaluations in a row without beating the best mean return "
                                 "(3.00)")
    assert seen == [1, 2, 3, 4, 5, 6, 7] and threshold.reason is None
    agent.learn(3 * STEP, progress=False, callback=[threshold, patience])  # 9, 0, 0: on to the end
    assert int(agent.global_step.numpy()) == 10 * STEP and agent.stop_reason is None
    agent.close()
    # A rule acts once per evaluation made in the current learn() call: not on an old one.
    class Agent:
        evaluations, evaluations_at_start = [{"step": 1, "mean_reward": 9.0}], 1

    rule = StopTrainingOnRewardThreshold(5)
    assert rule(Agent) is True
    Agent.evaluations = [*Agent.evaluations, {"step": 2, "mean_reward": 6.0}]
    assert rule(Agent) is False and rule.reason.startswith("evaluation at step 2 returned 6.00")
    records = [{"mean_reward": v} for v in (1, 5, 5, 2)]
    assert evaluations_without_improvement(records) == 2
    assert evaluations_without_improvement(records, min_evals=3) == 1
    with pytest.raises(ValueError):
        StopTrainingOnNoModelImprovement(-1)
