"""intra_op_threads: auto gives MLP updates on CPU one intra-op thread, in a process where
TensorFlow has not run yet (a normalised env included); XLA's off-policy steps keep
TensorFlow's default; an explicit
value that cannot apply (TensorFlow already running) is a clear error, and bad values are
rejected by the config and the CLI (exit 2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tensorflow as tf

from rl_sever import cli
from rl_sever.errors import ConfigError
from tests.helpers import tiny_agent, tiny_config

ROOT = Path(__file__).resolve().parents[1]

FRESH = r"""
import json, sys
import tensorflow as tf
from rl_sever.core.registry import get_agent_class

algo, env, overrides = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
klass = get_agent_class(algo)
agent = klass(env, klass.config_cls(total_steps=64, **overrides), logdir=None)
print("RESULT", json.dumps([agent.intra_op_threads,
                            tf.config.threading.get_intra_op_parallelism_threads()]))
"""


def fresh(algo: str, env: str, **overrides) -> list[int]:
    """[agent.intra_op_threads, TensorFlow's setting] after building the agent first thing."""
    environ = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="",
                   PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([sys.executable, "-c", FRESH, algo, env, json.dumps(overrides)],
                          cwd=ROOT, env=environ, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def test_auto_in_a_fresh_process():
    # One process each (TensorFlow fixes its pools once per process).
    assert fresh("sac", "Pendulum-v1") == [1, 1]  # off-policy MLP, no XLA: one thread
    assert fresh("sac", "Pendulum-v1", jit_compile=True) == [0, 0]  # XLA keeps the pool
    assert fresh("ppo", "CartPole-v1", intra_op_threads=2) == [2, 2]  # explicit
    # A normalised env is built before the agent sets the pools: it must run no TensorFlow op
    # (its statistics' variables are made when a checkpoint asks), or `auto` could not apply.
    assert fresh("ppo", "Acrobot-v1", normalize_obs=True, normalize_reward=True) == [1, 1]


def test_a_normalised_env_runs_no_tensorflow_op():
    script = ("from envs import make_vec_env\n"
              "from tensorflow.python.eager import context\n"
              "env = make_vec_env('Acrobot-v1', 2, seed=0, normalize_obs=True, normalize_reward=True)\n"
              "env.reset(); env.step([0, 1])\n"
              "print('RESULT', context.context()._context_handle is None)\n")
    environ = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=environ,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "RESULT True" in proc.stdout


def test_running_tensorflow_keeps_its_pools():
    # conftest ran TensorFlow at its defaults: auto reports them, an explicit other value fails.
    current = tf.config.threading.get_intra_op_parallelism_threads()
    assert tiny_agent("sac", fill=0).intra_op_threads == current
    assert tiny_agent("sac", fill=0, intra_op_threads=current).intra_op_threads == current
    with pytest.raises(ConfigError, match="intra_op_threads=3 cannot apply: TensorFlow has "
                                          "already run"):
        tiny_agent("sac", fill=0, intra_op_threads=3)


@pytest.mark.parametrize("value", [-1, "many", 1.5])
def test_bad_values(value):
    with pytest.raises(ConfigError, match="intra_op_threads"):
        tiny_config("sac", intra_op_threads=value).validate()


def test_cli_bad_value_exits_2(tmp_path, capsys):
    code = cli.main(["train", "sac", "Pendulum-v1", "--set", "intra_op_threads=-2",
                     "--logdir", str(tmp_path), "--no-progress"])
    assert code == 2
    assert "intra_op_threads must be auto or an integer >= 0" in capsys.readouterr().err
