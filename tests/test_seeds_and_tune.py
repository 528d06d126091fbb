"""`rl-sever train --seeds` (parallel processes, a failing seed reported while the others finish)
and `rl-sever tune` (Optuna trials in worker processes; a tune killed with SIGKILL resumes, the
trial it cut queued again with the same values), each started the way users start them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from rl_sever import cli
from rl_sever.errors import ConfigError
from rl_sever.experiments.seeds import child_argv, parse_seeds
from rl_sever.experiments.tune.study import (
    JOURNAL_FILE,
    STUDY_NAME,
    recover_journal,
    requeue_stale,
    storage,
)

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--n-envs", "2", "--set", "n_steps=16", "--set", "batch_size=16", "--set",
        "network.hidden_sizes=[16]", "--set", "eval_episodes=1", "--no-preset"]
FLAKY = '''
from agents.ppo import PPO


class FlakyPPO(PPO):
    algo = "flaky_ppo"

    def __init__(self, env, config=None, **kwargs):
        super().__init__(env, config, **kwargs)
        if self.config.seed == 1:
            raise RuntimeError("seed 1 breaks on purpose")
'''


def rl_sever(*argv, cwd, **kwargs):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="",
               PYTHONPATH=str(ROOT))
    return [sys.executable, "-m", "rl_sever.cli", *argv], dict(cwd=cwd, env=env, **kwargs)


def test_parse_seeds_and_child_arguments():
    assert parse_seeds("0-4") == [0, 1, 2, 3, 4] and parse_seeds("1-2,7") == [1, 2, 7]
    for bad, message in (("4-0", "goes down"), ("a", "seeds like"), ("1,1", "twice")):
        with pytest.raises(ConfigError, match=message):
            parse_seeds(bad)
    argv = ["ppo", "X", "--seeds", "0-2", "--jobs=2", "--logdir", "d", "--set", "a=1"]
    assert child_argv(argv, {"--seeds": True, "--jobs": True, "--logdir": True}) == [
        "ppo", "X", "--set", "a=1"]


def test_seeds_run_in_parallel_and_a_failed_seed_does_not_stop_the_others(tmp_path):
    (tmp_path / "flaky.py").write_text(FLAKY)
    command, options = rl_sever("train", "flaky:FlakyPPO", "CartPole-v1", "--seeds", "0-2",
                                "--jobs", "2", "--steps", "64", *TINY, "--logdir", "runs",
                                cwd=tmp_path)
    proc = subprocess.run(command, **options, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    out = proc.stdout
    assert "seed 1: failed (exit 1): RuntimeError: seed 1 breaks on purpose" in out
    assert out.count(": done in") == 2 and "final evaluation over 2 seeds: IQM" in out
    assert "1 of 3 seeds did not finish: 1" in proc.stderr
    (group,) = (tmp_path / "runs").iterdir()
    runs = sorted(p.name.split("__")[2] for p in group.iterdir() if p.is_dir())
    assert runs == ["0", "2"]  # seed 1 failed before its run folder was made
    assert sorted(p.name for p in group.glob("*.log")) == ["seed-0.log", "seed-1.log",
                                                           "seed-2.log"]
    assert cli.main(["report", str(group), "--out", str(tmp_path / "rep"), "--no-pictures"]) == 0
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert [len(c["runs"]) for c in report["cases"]] == [2]


SPACE = """
learning_rate: {low: 1.0e-4, high: 1.0e-2, log: true}
n_epochs: [1, 2]
network.hidden_sizes: {tiny: [16], small: [16, 16]}
"""


def trials(folder: Path) -> list:
    study = optuna.load_study(study_name=STUDY_NAME, storage=storage(folder))
    return study.get_trials(deepcopy=False)


def workers_alive(folder: Path) -> list[int]:
    alive = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "tune.worker" in cmdline and str(folder) in cmdline:
            alive.append(int(proc.name))
    return alive


def test_tune_resumes_after_a_kill(tmp_path):
    (tmp_path / "space.yaml").write_text(SPACE)
    command, options = rl_sever(
        "tune", "ppo", "CartPole-v1", "--trials", "4", "--budget", "6144", "--evals", "2",
        "--eval-episodes", "1", "--jobs", "2", "--space", "space.yaml", "--logdir", "tunes",
        "--n-envs", "2", "--set", "n_steps=16", "--set", "batch_size=16", "--no-preset",
        cwd=tmp_path)
    proc = subprocess.Popen(command, **options, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    folder, cut = None, None
    deadline = time.time() + 300
    while time.time() < deadline and cut is None:
        time.sleep(0.1)
        found = list((tmp_path / "tunes").glob("tune__*"))
        if not found or not (found[0] / JOURNAL_FILE).exists():
            continue
        folder = found[0]
        states = trials(folder)
        running = [t for t in states if t.state == TrialState.RUNNING and "values" in t.user_attrs]
        if any(t.state == TrialState.COMPLETE for t in states) and running:
            os.kill(proc.pid, signal.SIGKILL)  # the tune's own process, not its worker
            cut = [t.number for t in running]
    proc.wait(timeout=60)
    assert cut, proc.stdout.read().decode()
    time.sleep(0.5)
    assert workers_alive(folder) == []  # the worker died with the tune
    before = trials(folder)
    # A trial the other worker had only just asked for (no values yet) is failed, not queued.
    cut = [t.number for t in before if t.state == TrialState.RUNNING and "values" in t.user_attrs]
    assert cut, [(t.number, t.state, sorted(t.user_attrs)) for t in before]
    command, options = rl_sever("tune", "--resume", str(folder), "--jobs", "1", cwd=tmp_path)
    done = subprocess.run(command, **options, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"trials {', '.join(map(str, cut))} did not finish; queued again" in done.stdout, (
        done.stdout)
    after = {t.number: t for t in trials(folder)}
    states = {n: (t.state.name, t.user_attrs.get("retry_of"), t.params) for n, t in after.items()}
    for number in cut:
        assert after[number].state == TrialState.FAIL, states
        (retry,) = [t for t in after.values() if t.user_attrs.get("retry_of") == number]
        assert retry.params == after[number].params and retry.state in (
            TrialState.COMPLETE, TrialState.PRUNED), states
    finished = [t for t in after.values() if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 4, states
    best = yaml.safe_load((folder / "best.yaml").read_text())
    assert set(best) == {"learning_rate", "n_epochs", "network", "n_envs", "n_steps",
                         "batch_size"} and best["n_envs"] == 2
    assert "trials completed" in (folder / "report.md").read_text()


def test_a_trial_cut_before_its_values_were_sampled_is_failed_not_queued():
    study = optuna.create_study(direction="maximize")
    sampled, asked = study.ask(), study.ask()
    sampled.suggest_float("learning_rate", 1e-4, 1e-2)
    sampled.set_user_attr("values", {"learning_rate": sampled.params["learning_rate"]})
    asked.suggest_int("n_epochs", 1, 4)  # cut between two suggestions
    assert requeue_stale(study) == [sampled.number]
    states = {t.number: t.state for t in study.get_trials()}
    assert states == {0: TrialState.FAIL, 1: TrialState.FAIL, 2: TrialState.WAITING}
    (waiting,) = study.get_trials(states=(TrialState.WAITING,))
    assert waiting.user_attrs == {"retry_of": 0} and waiting.params == {}
    again = study.ask()  # the queued trial samples the same values
    assert again.suggest_float("learning_rate", 1e-4, 1e-2) == sampled.params["learning_rate"]
    # The retry is cut too, before its worker recorded "values": its values are fixed, so it
    # is queued again with them; every cut trial is queued once.
    assert requeue_stale(study) == [again.number]
    (waiting,) = study.get_trials(states=(TrialState.WAITING,))
    assert waiting.user_attrs == {"retry_of": again.number}
    assert study.ask().suggest_float("learning_rate", 1e-4, 1e-2) == sampled.params[
        "learning_rate"]
    assert requeue_stale(study) == [waiting.number] and requeue_stale(study) == []


def test_a_resume_clears_what_a_kill_mid_write_leaves_in_the_journal(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a relative folder, as `--logdir tunes` gives
    folder = Path("tunes") / "t"
    folder.mkdir(parents=True)
    study = optuna.create_study(study_name=STUDY_NAME, storage=storage(folder))
    study.enqueue_trial({"x": 1.0})
    journal = folder / JOURNAL_FILE
    whole = journal.read_bytes()
    journal.write_bytes(whole + b'{"op_code": 4, "worker_id": "cut')  # killed mid-line
    lock = folder / (JOURNAL_FILE + ".lock")
    os.symlink(os.path.relpath(journal), lock)  # and holding the lock, as Optuna takes it
    recover_journal(folder)
    assert not lock.is_symlink() and journal.read_bytes() == whole
    study = optuna.load_study(study_name=STUDY_NAME, storage=storage(folder))
    study.enqueue_trial({"x": 2.0})  # appends after whole lines: the journal stays readable
    assert [t.system_attrs["fixed_params"] for t in study.get_trials()] == [{"x": 1.0},
                                                                           {"x": 2.0}]


def test_tune_bad_input_is_one_line(tmp_path, capsys):
    (tmp_path / "bad.yaml").write_text("learning_rat: [0.1]\n")
    assert cli.main(["tune", "ppo", "CartPole-v1", "--space", str(tmp_path / "bad.yaml"),
                     "--logdir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "'learning_rat' is not a config key of ppo" in err and "learning_rate" in err
    assert cli.main(["tune", "--resume", str(tmp_path)]) == 2
    assert "is not a tune folder" in capsys.readouterr().err
    assert cli.main(["tune", "ppo", "CartPole-v1", "--budget", "0"]) == 2
    assert "--budget must be positive" in capsys.readouterr().err
