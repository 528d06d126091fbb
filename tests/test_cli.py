"""The rl-sever CLI end to end, in-process, on tiny budgets; and its user-error paths."""

from __future__ import annotations

import shutil
from collections import defaultdict
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import tensorflow as tf
from tensorboard.compat.proto import event_pb2

from rl_sever import cli
from rl_sever.config.fields import describe_config
from rl_sever.core.registry import algorithm_names

TINY = (
    "--n-envs 2 --set n_steps=16 --set batch_size=32 --set n_epochs=2 --set eval_episodes=1 "
    "--no-progress"
).split()


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_dirs(logdir: Path) -> list[Path]:
    return sorted(p for p in logdir.iterdir() if p.is_dir()) if logdir.exists() else []


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A 2-iteration PPO CartPole run (64 env steps), with observation normalisation."""
    logdir = tmp_path_factory.mktemp("runs")
    code = cli.main(
        [
            "train",
            "ppo",
            "CartPole-v1",
            *TINY,
            "--steps",
            "64",
            "--logdir",
            str(logdir),
            "--set",
            "normalize_obs=true",
        ]
    )
    assert code == 0
    (run_dir,) = run_dirs(logdir)
    return run_dir


def scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Tag -> (step, value) of every scalar summary in the run's event files, in write order."""
    events = []
    for path in run_dir.glob("events.out.tfevents.*"):
        for record in tf.data.TFRecordDataset(str(path)):
            event = event_pb2.Event.FromString(record.numpy())
            if event.HasField("summary"):
                events.append(event)
    events.sort(key=lambda e: e.wall_time)
    out = defaultdict(list)
    for event in events:
        for value in event.summary.value:
            if value.metadata.plugin_data.plugin_name == "scalars":
                out[value.tag].append((event.step, float(tf.make_ndarray(value.tensor))))
    return out


def scalar_steps(run_dir: Path) -> dict[str, list[int]]:
    return {tag: [step for step, _ in points] for tag, points in scalars(run_dir).items()}


# -- train / resume ---------------------------------------------------------------------------
def test_train_writes_run_and_prints_summary(trained, capsys):
    assert (trained / "config.json").is_file()
    assert tf.train.latest_checkpoint(str(trained / "checkpoints")).endswith("ckpt-64")
    steps = scalar_steps(trained)
    assert steps["train/loss"] == [32, 64]
    assert "eval/mean_reward" in steps


def test_train_output(tmp_path, capsys):
    code, out, err = run(
        capsys,
        "train",
        "a2c",
        "CartPole-v1",
        "--n-envs",
        "2",
        "--steps",
        "20",
        "--set",
        "eval_episodes=1",
        "--set",
        "audit=false",
        "--no-progress",
        "--logdir",
        str(tmp_path),
    )
    assert code == 0, err
    (run_dir,) = run_dirs(tmp_path)
    assert "a2c/CartPole-v1 preset" in out
    assert f"run folder: {run_dir}" in out
    assert "final evaluation: mean return" in out
    assert f"tensorboard --logdir {tmp_path}" in out


def test_resume_continues_the_step_axis(trained, tmp_path, capsys):
    run_dir = tmp_path / trained.name
    shutil.copytree(trained, run_dir)
    code, out, err = run(
        capsys, "train", "--resume", str(run_dir), "--steps", "64", "--no-progress"
    )
    assert code == 0, err
    assert "resuming" in out and "at step 64" in out
    assert tf.train.latest_checkpoint(str(run_dir / "checkpoints")).endswith("ckpt-128")
    assert run_dirs(tmp_path) == [run_dir]  # same folder, no new run
    steps = scalar_steps(run_dir)
    assert steps["train/loss"] == [32, 64, 96, 128]
    for tag, s in steps.items():
        assert all(a < b for a, b in zip(s, s[1:])), (tag, s)
    # The target is reached: resuming again without --steps has nothing to do.
    code, out, _ = run(capsys, "train", "ppo", "CartPole-v1", "--resume", str(run_dir))
    assert code == 0 and "already reached" in out


def test_interrupt_saves_and_exits_130(tmp_path, capsys, monkeypatch):
    from rl_sever.onpolicy.collector import OnPolicyCollector

    original, calls = OnPolicyCollector.collect, []

    def collect(self):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(OnPolicyCollector, "collect", collect)
    code, _, err = run(
        capsys,
        "train",
        "ppo",
        "CartPole-v1",
        *TINY,
        "--steps",
        "320",
        "--logdir",
        str(tmp_path),
        "--set",
        "audit=false",
    )
    assert code == 130
    assert "resume with: rl-sever train --resume" in err and "Traceback" not in err
    (run_dir,) = run_dirs(tmp_path)
    assert tf.train.latest_checkpoint(str(run_dir / "checkpoints")).endswith("ckpt-32")


# -- eval -------------------------------------------------------------------------------------
def test_eval(trained, capsys):
    code, out, err = run(capsys, "eval", str(trained), "--episodes", "2", "--seed", "3")
    assert code == 0, err
    assert "2 episodes (seed 3)" in out
    assert "mean return:" in out and "±" in out and "mean length:" in out


def test_eval_default_seed_matches_the_training_evaluation(trained, capsys):
    ((_, logged),) = scalars(trained)["eval/mean_reward"]
    code, out, _ = run(capsys, "eval", str(trained), "--episodes", "1")
    assert code == 0
    assert f"mean return: {logged:.2f} ±" in out


def test_eval_render_without_display(trained, capsys, monkeypatch):
    for var in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER"):
        monkeypatch.delenv(var, raising=False)
    code, _, err = run(capsys, "eval", str(trained), "--render")
    assert code == 2
    assert "display" in err and "Traceback" not in err


# -- audit, list, config ----------------------------------------------------------------------
def test_audit_ok(capsys):
    code, out, err = run(
        capsys,
        "audit",
        "ppo",
        "CartPole-v1",
        "--set",
        "n_steps=16",
        "--set",
        "batch_size=32",
        "--set",
        "n_envs=2",
        "--seed",
        "1",
    )
    assert code == 0, err
    assert "loss \\ module" in out and "actor" in out and "critic" in out
    assert "verdict: OK" in out


def test_audit_violation_exits_1(capsys, monkeypatch):
    from agents.ppo import PPO
    from rl_sever.audit import Flow, FlowContract

    wrong = FlowContract(
        {
            "policy": Flow(must={"critic"}),
            "value": Flow(must={"critic"}),
            "entropy": Flow(must={"actor"}),
        }
    )
    monkeypatch.setattr(PPO, "flow_contract", lambda self: wrong)
    code, out, _ = run(
        capsys,
        "audit",
        "ppo",
        "CartPole-v1",
        "--set",
        "n_steps=16",
        "--set",
        "batch_size=32",
        "--set",
        "n_envs=2",
    )
    assert code == 1
    assert "verdict: FAIL" in out and "policy" in out


def test_list(capsys):
    code, out, _ = run(capsys, "list")
    assert code == 0
    for name in algorithm_names():
        assert name in out
    assert "CartPole-v1" in out and "HalfCheetah-v5" in out


@pytest.mark.parametrize("argv", [["config", "ppo"], ["train", "ppo", "--help-config"]])
def test_config_listing_has_every_key_and_doc(capsys, argv):
    from agents.ppo import PPOConfig

    code, out, _ = run(capsys, *argv)
    assert code == 0
    for key, default, doc in describe_config(PPOConfig()):
        assert f"{key} = {default!r}" in out
        assert doc and doc in out
    assert "network.hidden_sizes" in out


def test_help_exits_cleanly(capsys):
    code, out, _ = run(capsys, "train", "--help")
    assert code == 0 and "--resume" in out


# -- user errors: exit 2, a message naming the problem, no traceback, no run folder -----------
class BadActionEnv(gym.Env):
    observation_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (2, 2), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(3, np.float32), {}

    def step(self, action):
        return np.zeros(3, np.float32), 0.0, False, False, {}


gym.register("RlSeverTest/BadAction-v0", entry_point=BadActionEnv, max_episode_steps=10)


@pytest.mark.parametrize(
    "extra,message",
    [
        (["train", "ppoo", "CartPole-v1"], "unknown algorithm 'ppoo'"),
        (["train", "ppo", "CartPol-v1"], "CartPole-v1"),
        (["train", "ppo", "FrozenLake-v1"], "unsupported observation space"),
        (["train", "ppo", "RlSeverTest/BadAction-v0"], "action spaces must be 1-D"),
        (["train", "ppo", "CartPole-v1", "--set", "bad.key=1"], "bad.key"),
        (["train", "ppo", "CartPole-v1", "--set", "n_steps=abc"], "n_steps"),
        (["train", "ppo", "CartPole-v1", "--set", "gamma=2"], "gamma"),
        (["train", "ppo", "CartPole-v1", "--set", "novalue"], "key=value"),
        (["train", "ppo", "CartPole-v1", "--config", "missing.yaml"], "not found"),
        (["train", "ppo", "CartPole-v1", "--config", "BAD_YAML"], "not valid YAML"),
        (["train", "ppo"], "ENV_ID"),
        (["audit", "a2cc", "CartPole-v1"], "Did you mean: a2c"),
    ],
)
def test_train_errors(extra, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "BAD_YAML").write_text("n_steps: [1, 2\n")
    logdir = tmp_path / "runs"
    code, out, err = (
        run(capsys, *extra, "--logdir", str(logdir)) if extra[0] == "train" else run(capsys, *extra)
    )
    assert code == 2, (out, err)
    assert err.startswith("error: ") and message in err
    assert "Traceback" not in err
    assert run_dirs(logdir) == []


def _run_dir_errors(trained: Path, tmp_path: Path) -> dict[str, tuple[Path, str]]:
    no_config = tmp_path / "no_config"
    no_config.mkdir()
    no_ckpt = tmp_path / "no_ckpt"
    (no_ckpt / "checkpoints").mkdir(parents=True)
    shutil.copy(trained / "config.json", no_ckpt)
    corrupt = tmp_path / "corrupt"
    shutil.copytree(trained, corrupt)
    for data in (corrupt / "checkpoints").glob("ckpt-*.data-*"):  # every one: no fallback
        data.write_bytes(data.read_bytes()[:100])
    return {
        "missing": (tmp_path / "nope", "run directory not found"),
        "no_config": (no_config, "not an rl_sever run directory"),
        "no_ckpt": (no_ckpt, "no checkpoint found"),
        "corrupt": (corrupt, "no readable checkpoint"),
    }


@pytest.mark.parametrize("case", ["missing", "no_config", "no_ckpt", "corrupt"])
def test_run_dir_errors(case, trained, tmp_path, capsys):
    run_dir, message = _run_dir_errors(trained, tmp_path)[case]
    commands = [
        ["eval", str(run_dir)],
        ["export", str(run_dir), str(tmp_path / "out")],
        ["train", "--resume", str(run_dir)],
    ]
    # Building an agent costs seconds: the cases that need one check a single command.
    for argv in commands if case in ("missing", "no_config") else commands[:1]:
        code, _, err = run(capsys, *argv)
        assert code == 2, err
        assert message in err and "Traceback" not in err


def test_resume_with_other_algorithm(trained, capsys):
    code, _, err = run(capsys, "train", "a2c", "--resume", str(trained))
    assert code == 2 and "trained with algorithm ppo" in err


def test_fresh_process_train_prints_no_native_tensorflow_log_lines(tmp_path):
    """TensorFlow's C++ notes (oneDNN, CUDA probing, the one-time 'DT_INT32' line that reads as
    an error) stay off a user's console, without TF_CPP_MIN_LOG_LEVEL set."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_CPP", "RL_SEVER"))}
    argv = ["train", "ppo", "CartPole-v1", "--steps", "64", "--logdir", str(tmp_path), *TINY]
    proc = subprocess.run([sys.executable, "-c", "import sys; from rl_sever.cli import main; "
                           f"sys.exit(main({argv!r}))"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "steps trained: 64" in proc.stdout
    native = [line for line in proc.stderr.splitlines()
              if line.startswith(("E0000", "I0000", "W0000")) or "oneDNN" in line]
    assert native == [], native


EXITING = '''
import atexit
import threading
import time
from pathlib import Path

from agents.ppo import PPO

atexit.register(lambda: Path("atexit.done").write_text("ran"))


class ExitingPPO(PPO):
    algo = "exiting_ppo"

    def __init__(self, env, config=None, **kwargs):
        super().__init__(env, config, **kwargs)
        # A non-daemon thread still working when the run ends: the exit waits for it.
        threading.Thread(target=lambda: time.sleep(1) or Path("thread.done").write_text("ran"),
                         daemon=False).start()
'''


def test_the_command_exits_as_python_would_without_the_teardown(tmp_path):
    """`python -m rl_sever.cli` / `rl-sever` skip the interpreter's teardown (rl_sever.cli.run)
    but still join threads and run atexit handlers; the run folder is complete and the exit
    code is the command's."""
    import os
    import subprocess
    import sys

    (tmp_path / "exiting.py").write_text(EXITING)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    env.pop("RL_SEVER_FULL_EXIT", None)
    proc = subprocess.run([sys.executable, "-m", "rl_sever.cli", "train", "exiting:ExitingPPO",
                           "CartPole-v1", "--steps", "64", "--logdir", "runs", *TINY],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.rstrip().splitlines()[-1].startswith("tensorboard --logdir")
    assert (tmp_path / "atexit.done").read_text() == "ran"
    assert (tmp_path / "thread.done").read_text() == "ran"
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert list(run_dir.glob("events.out.tfevents.*")) and (run_dir / "config.json").is_file()
    assert "ckpt-64.index" in [p.name for p in (run_dir / "checkpoints").iterdir()]
    proc = subprocess.run([sys.executable, "-m", "rl_sever.cli", "train", "ppo", "CartPole-v1",
                           "--steps", "0"], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=300)
    assert proc.returncode == 2 and "total_steps must be positive" in proc.stderr


def test_run_ends_with_python_s_exit_steps_then_a_quick_exit(monkeypatch):
    import atexit
    import threading

    calls = []
    monkeypatch.setattr(cli, "main", lambda: 3)
    monkeypatch.setattr(threading, "_shutdown", lambda: calls.append("threads"))
    monkeypatch.setattr(atexit, "_run_exitfuncs", lambda: calls.append("atexit"))
    monkeypatch.setattr(cli.os, "_exit", calls.append)
    monkeypatch.delenv("RL_SEVER_FULL_EXIT", raising=False)
    cli.run()
    assert calls == ["threads", "atexit", 3]  # in the interpreter's order, then out
    monkeypatch.setenv("RL_SEVER_FULL_EXIT", "1")
    with pytest.raises(SystemExit) as e:
        cli.run()
    assert e.value.code == 3 and calls == ["threads", "atexit", 3]
