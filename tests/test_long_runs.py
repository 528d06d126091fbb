"""Long runs are safe by default (fault injection in subprocesses, small budgets, no wall-clock
assertions): SIGKILL then resume, SIGTERM, unreadable newest checkpoints, a second writer, a
stale lock, and headless progress lines."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from rl_sever import cli
from rl_sever.config.run import RunConfig
from rl_sever.core.checkpoint import CheckpointFallbackWarning
from rl_sever.core.loop import checkpoint_interval
from rl_sever.core.rundir import RunLock
from tests.test_cli import run_dirs, scalar_steps

TRAIN = [sys.executable, "-m", "rl_sever.cli", "train", "ppo", "CartPole-v1", "--seed", "1",
         "--set", "eval_episodes=0", "--set", "n_steps=32", "--set", "n_epochs=1"]
WAIT = 300  # seconds a subprocess may take to reach a state (a guard, not an assertion)


def start(logdir: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.Popen([*TRAIN, "--logdir", str(logdir), *extra], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def checkpoints(run_dir: Path) -> list[int]:
    return sorted(int(p.stem.split("-")[1]) for p in (run_dir / "checkpoints").glob("ckpt-*.index"))


def wait_for_checkpoints(proc: subprocess.Popen, logdir: Path, n: int) -> Path:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        dirs = run_dirs(logdir)
        if dirs and len(checkpoints(dirs[0])) >= n:
            return dirs[0]
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("the run wrote no checkpoint in time")


def test_default_checkpoints_every_tenth_of_the_run_and_every_ten_minutes():
    cfg = RunConfig()
    assert cfg.checkpoint_every == -1 and cfg.checkpoint_minutes == 10.0
    assert checkpoint_interval(cfg, 1_000_000) == 100_000
    assert checkpoint_interval(RunConfig(checkpoint_every=0), 1_000_000) == 0


def test_sigkill_loses_at_most_one_interval_and_resume_keeps_one_step_axis(tmp_path):
    # 40,960 steps: a checkpoint every 4,096 by default. Killed after a random number more.
    proc = start(tmp_path, "--steps", "40960", "--no-progress")
    run_dir = wait_for_checkpoints(proc, tmp_path, random.Random(7).randint(1, 3))
    time.sleep(random.Random(8).uniform(0.0, 0.5))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = checkpoints(run_dir)[-1]
    logged = max(scalar_steps(run_dir)["time/iterations"])
    assert logged - saved <= 4096 + 256  # one interval (and the iteration ending it)
    assert cli.main(["train", "--resume", str(run_dir), "--no-progress"]) == 0
    steps = scalar_steps(run_dir)["time/iterations"]
    assert steps == sorted(set(steps)) and steps[-1] == 40960  # no duplicates, one axis


def test_sigterm_saves_and_prints_the_resume_command(tmp_path):
    proc = start(tmp_path, "--steps", "400000", "--no-progress")
    run_dir = wait_for_checkpoints(proc, tmp_path, 1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=WAIT)
    assert proc.returncode == 130, err
    assert "terminated (SIGTERM) at step" in err and f"rl-sever train --resume {run_dir}" in err
    step = int(err.split("terminated (SIGTERM) at step ")[1].split(";")[0].replace(",", ""))
    assert checkpoints(run_dir)[-1] == step


def test_second_writer_is_refused_and_a_dead_writers_lock_is_taken_over(tmp_path, capsys):
    proc = start(tmp_path, "--steps", "400000", "--no-progress")
    run_dir = wait_for_checkpoints(proc, tmp_path, 1)
    try:
        code = cli.main(["train", "--resume", str(run_dir), "--steps", "64", "--no-progress"])
        err = capsys.readouterr().err
        assert code == 2 and f"is being trained by pid {proc.pid}" in err
    finally:
        proc.send_signal(signal.SIGKILL)  # dies holding the lock
        proc.wait()
    assert f"pid {proc.pid}" in (run_dir / ".lock").read_text()  # stale
    assert cli.main(["train", "--resume", str(run_dir), "--steps", "64", "--no-progress"]) == 0
    assert f"pid {os.getpid()}" in (run_dir / ".lock").read_text()
    with RunLock(run_dir):  # released at the end of the resumed run
        pass


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    logdir = tmp_path_factory.mktemp("runs")
    argv = ["train", "ppo", "CartPole-v1", "--n-envs", "2", "--set", "n_steps=16",
            "--set", "batch_size=32", "--set", "eval_episodes=0", "--set", "checkpoint_every=64",
            "--steps", "192", "--no-progress", "--logdir", str(logdir)]
    assert cli.main(argv) == 0
    (run_dir,) = run_dirs(logdir)
    assert checkpoints(run_dir) == [64, 128, 192]
    return run_dir


def _copy(trained: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(trained, tmp_path / trained.name))


@pytest.mark.parametrize("damage", ["truncated", "corrupted", "index lost"])
def test_an_unreadable_newest_checkpoint_falls_back_to_the_newest_readable(damage, trained,
                                                                          tmp_path, capsys):
    run_dir = _copy(trained, tmp_path)
    ckpt = run_dir / "checkpoints"
    if damage == "truncated":
        (data,) = ckpt.glob("ckpt-192.data-*")
        data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    elif damage == "corrupted":
        (ckpt / "ckpt-192.index").write_bytes(b"\0garbage" * 64)
    else:  # the newest is fine, the index naming it is gone
        (ckpt / "checkpoint").unlink()
    expect = 128 if damage != "index lost" else 192
    for argv in (["eval", str(run_dir), "--episodes", "1"],
                 ["train", "--resume", str(run_dir), "--steps", "32", "--no-progress"]):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert cli.main(argv) == 0
        fallbacks = [str(w.message) for w in caught if w.category is CheckpointFallbackWarning]
        if damage == "index lost":
            assert fallbacks == []
        else:
            (message,) = fallbacks
            assert message.startswith("checkpoint ckpt-192 (") and "using ckpt-128" in message
        assert f"step {expect:,}" in capsys.readouterr().out
    steps = scalar_steps(run_dir)["time/iterations"]
    assert steps == sorted(set(steps)) and steps[-1] == expect + 32


def test_the_cli_prints_the_fallback_as_one_warning_line(trained, tmp_path):
    run_dir = _copy(trained, tmp_path)
    for data in (run_dir / "checkpoints").glob("ckpt-192.data-*"):
        data.write_bytes(b"")
    out = subprocess.run([sys.executable, "-m", "rl_sever.cli", "eval", str(run_dir),
                          "--episodes", "1"], capture_output=True, text=True,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert out.returncode == 0, out.stderr
    lines = [ln for ln in out.stderr.splitlines() if "unreadable" in ln]
    assert len(lines) == 1 and lines[0].startswith("warning: checkpoint ckpt-192")
    assert "using ckpt-128" in lines[0] and "Traceback" not in out.stderr


def test_without_a_terminal_progress_comes_as_lines(tmp_path):
    proc = start(tmp_path, "--steps", "2048", "--set", "progress_seconds=0.05")
    out, err = proc.communicate(timeout=WAIT)
    assert proc.returncode == 0, err
    lines = [ln for ln in out.splitlines() if ln.startswith("step ")]
    assert lines and lines[-1].startswith("step 2,048/2,048 (100.0%) | ")
    assert all(" fps | return " in ln and " | left " in ln for ln in lines)
    assert "\r" not in out + err  # no progress bar without a terminal


def test_time_based_checkpoints(tmp_path):
    from tests.helpers import tiny_agent

    # checkpoint_minutes that any iteration outlasts: a checkpoint after every iteration.
    agent = tiny_agent("ppo", logdir=tmp_path, checkpoint_every=0, checkpoint_minutes=1e-9,
                       eval_episodes=0)
    agent.learn(96, progress=False)
    assert checkpoints(agent.run_dir) == [32, 64, 96]
    agent.close()
    agent = tiny_agent("ppo", logdir=tmp_path, checkpoint_every=0, checkpoint_minutes=0,
                       eval_episodes=0)
    agent.learn(96, progress=False)
    assert checkpoints(agent.run_dir) == [96]  # the end only
    agent.close()


def test_resume_applies_changeable_keys_and_refuses_fixed_ones(trained, tmp_path, capsys):
    run_dir = _copy(trained, tmp_path)
    argv = ["train", "--resume", str(run_dir), "--steps", "32", "--no-progress"]
    assert cli.main([*argv, "--set", "network.hidden_sizes=[8]", "--set", "n_envs=4"]) == 2
    err = capsys.readouterr().err
    assert "cannot be resumed with a different" in err
    assert "n_envs: 2 -> 4" in err and "network.hidden_sizes: [64, 64] -> [8]" in err
    assert checkpoints(run_dir) == [64, 128, 192]  # nothing written
    assert cli.main([*argv, "--set", "learning_rate=1e-4", "--set", "log_every_steps=64"]) == 0
    record = json.loads((run_dir / "config.json").read_text())
    assert record["config"]["learning_rate"] == 1e-4
    (entry,) = record["history"]
    assert entry["step"] == 192
    assert entry["changes"] == {"learning_rate": [1e-3, 1e-4], "log_every_steps": [0, 64]}
