"""tf.distribute learners (config `distribute`, rl_sever.core.distribute).

Logical devices and collectives are configured before TensorFlow initialises, so every
multi-device case runs in a fresh Python process: two logical CPUs for MirroredStrategy, two
worker processes on localhost ports for MultiWorkerMirroredStrategy.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rl_sever.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
# Measured: max |mirrored - one device| after three updates is ~4e-9 (PPO) and ~3e-8 (A2C): the
# replicas' mean of two half-batch means rounds differently from one full-batch mean.
ATOL = 1e-6

MIRRORED_SCRIPT = r"""
import json
import numpy as np
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from rl_sever.core.distribute import ReplicaSet
from rl_sever.errors import ConfigError
from tests.helpers import make_agent

DEVICES = {"distribute": "mirrored", "devices": ["/cpu:0", "/cpu:1"]}


def run(algo, overrides):
    agent = make_agent(algo, "CartPole-v1", {"total_steps": 96, "eval_episodes": 0, **overrides})
    init = [v.numpy().copy() for vs in agent.flow_modules().values() for v in vs]
    losses = []
    agent.learn(progress=False, callback=lambda a, m: losses.append(m["train/loss"]))
    params = [v.numpy() for vs in agent.flow_modules().values() for v in vs]
    traces = agent.train_fn.experimental_get_tracing_count()
    agent.close()
    return init, params, losses, traces


# A recurrent policy: each replica takes whole sequences (4 per minibatch, 2 per replica).
LSTM = {"network.recurrent": "lstm", "network.recurrent_size": 8, "n_envs": 4, "n_steps": 16,
        "batch_size": 32, "bptt_length": 8}
out = {}
for case, algo, extra in (("ppo", "ppo", {}), ("a2c", "a2c", {}), ("ppo_lstm", "ppo", LSTM)):
    i0, p0, l0, _ = run(algo, extra)
    i1, p1, l1, traces = run(algo, {**extra, **DEVICES})
    out[case] = {
        "init_equal": all(np.array_equal(a, b) for a, b in zip(i0, i1)),
        "max_diff": max(float(np.max(np.abs(a - b))) for a, b in zip(p0, p1)),
        "max_change": max(float(np.max(np.abs(a - b))) for a, b in zip(p0, i0)),
        "losses": [l0, l1], "traces": traces,
    }

# Freeze flags and checkpoints hold under the strategy: a frozen critic stays bit-identical, and
# a reloaded agent has the trained weights.
import tempfile
from rl_sever.core.agent import Agent

agent = make_agent("ppo", "CartPole-v1", {"total_steps": 64, "eval_episodes": 0,
                                          "freeze": {"critic": {}}, **DEVICES},
                   logdir=tempfile.mkdtemp())
before = {m: [v.numpy().copy() for v in vs] for m, vs in agent.flow_modules().items()}
agent.learn(progress=False)
after = {m: [v.numpy() for v in vs] for m, vs in agent.flow_modules().items()}
loaded = Agent.load(agent.run_dir)
out["freeze"] = {m: all(np.array_equal(a, b) for a, b in zip(before[m], after[m])) for m in before}
out["reload_equal"] = all(np.array_equal(a, v.numpy()) for m, vs in loaded.flow_modules().items()
                          for a, v in zip(after[m], vs))
agent.close()
loaded.close()

# The split itself: each replica sees half the rows; a disconnected variable keeps a None grad.
replicas = ReplicaSet("mirrored", DEVICES["devices"])
w, unused = tf.Variable([1.0, 2.0]), tf.Variable(3.0)
x = tf.reshape(tf.range(8.0), [4, 2])

def loss_fn(batch):
    loss = tf.reduce_mean(tf.reduce_sum(batch["x"] * w, 1) ** 2)
    return loss, {"rows": tf.cast(tf.shape(batch["x"])[0], tf.float32)}

def grad_fn(batch):  # the learner's tape: explicit watch list
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch([w, unused])
        loss, metrics = loss_fn(batch)
    return loss, metrics, tape.gradient(loss, [w, unused])

loss, metrics, grads = tf.function(lambda x: replicas.gradients(grad_fn, {"x": x}, [w, unused]))(x)
with tf.GradientTape() as tape:
    full = loss_fn({"x": x})[0]
out["split"] = {"rows": float(metrics["rows"]), "loss": [float(loss), float(full)],
                "grad": [grads[0].numpy().tolist(), tape.gradient(full, w).numpy().tolist()],
                "none_kept": grads[1] is None}

try:  # 9 envs x 1 step: one minibatch of 9 rows cannot be split over two replicas
    make_agent("a2c", "CartPole-v1", {"n_envs": 9, "n_steps": 1, **DEVICES})
except ConfigError as e:
    out["indivisible"] = str(e)
try:
    make_agent("a2c", "tf:CartPole-v1", DEVICES)
except ConfigError as e:
    out["tfnative"] = str(e)
print("RESULT " + json.dumps(out))
"""

WORKER_SCRIPT = r"""
import json, sys
from pathlib import Path
from rl_sever.core.distribute import get_strategy

get_strategy("multiworker")  # first: collectives are configured before TensorFlow's first op
import numpy as np
from tests.helpers import make_agent

logdir, out = Path(sys.argv[1]), Path(sys.argv[2])
agent = make_agent("ppo", "CartPole-v1", {"distribute": "multiworker", "total_steps": 128,
                                          "eval_episodes": 0, "checkpoint_every": 64},
                   logdir=logdir)
folder = agent.ensure_run_dir()
agent.learn(progress=False)
params = [v.numpy() for vs in agent.flow_modules().values() for v in vs]
np.savez(out.with_suffix(".npz"), *params)
out.with_suffix(".json").write_text(json.dumps({
    "chief": agent.replicas.is_chief, "replicas": agent.replicas.count,
    "folder": str(folder), "step": int(agent.global_step.numpy()),
    "data_seed": agent.data_seed, "workers": agent.replicas.workers,
    "last_obs": agent.collector.buffer.arrays().obs.tolist()}))
agent.close()
"""


def _env() -> dict[str, str]:
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="",
                PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("localhost", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@pytest.fixture(scope="module")
def mirrored() -> dict:
    proc = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT], cwd=ROOT, env=_env(),
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


@pytest.mark.parametrize("algo", ["ppo", "a2c", "ppo_lstm"])
def test_mirrored_two_devices_match_one_device(mirrored, algo):
    r = mirrored[algo]
    assert r["init_equal"]
    assert r["max_change"] > 1e-3  # the updates moved the weights: the comparison means something
    assert r["max_diff"] <= ATOL, r
    np.testing.assert_allclose(r["losses"][1], r["losses"][0], rtol=1e-5, atol=ATOL)
    assert r["traces"] == 1  # one trace for the whole run, strategy or not


def test_mirrored_freeze_flags_and_checkpoints_hold(mirrored):
    assert mirrored["freeze"] == {"actor": False, "critic": True}  # only the frozen one kept
    assert mirrored["reload_equal"]


def test_mirrored_replicas_take_equal_slices(mirrored):
    s = mirrored["split"]
    assert s["rows"] == 2.0  # 4 rows over 2 replicas
    np.testing.assert_allclose(s["loss"][0], s["loss"][1], rtol=1e-6)
    np.testing.assert_allclose(s["grad"][0], s["grad"][1], rtol=1e-6)
    assert s["none_kept"]  # a disconnected variable is not handed a zero gradient


def test_mirrored_config_errors(mirrored):
    assert "minibatch size (9) must be divisible by the number of replicas (2)" in mirrored["indivisible"]
    assert "not supported with TF-native" in mirrored["tfnative"]


def test_multiworker_workers_collect_their_own_data_into_identical_weights(tmp_path):
    ports = _free_ports(2)
    cluster = {"worker": [f"localhost:{p}" for p in ports]}
    logdir = tmp_path / "runs"
    procs = []
    for index in range(2):
        env = dict(_env(), TF_CONFIG=json.dumps({"cluster": cluster,
                                                 "task": {"type": "worker", "index": index}}))
        procs.append(subprocess.Popen(
            [sys.executable, "-c", WORKER_SCRIPT, str(logdir), str(tmp_path / f"worker{index}")],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        errs = [p.communicate(timeout=120)[1] for p in procs]
    finally:
        for p in procs:  # a worker left waiting for its peer would block forever
            if p.poll() is None:
                p.kill()
                p.wait()
    assert [p.returncode for p in procs] == [0, 0], "\n".join(e[-3000:] for e in errs)
    info = [json.loads((tmp_path / f"worker{i}.json").read_text()) for i in range(2)]
    assert [i["chief"] for i in info] == [True, False]
    # Each worker stepped 2 iterations of 32 env steps; the run counts both workers' steps.
    assert all(i["replicas"] == 2 and i["workers"] == 2 and i["step"] == 128 for i in info)
    # Distinct data (DD-PPO): worker 1's envs are seeded after worker 0's 2 envs.
    assert [i["data_seed"] for i in info] == [0, 2]
    assert not np.array_equal(info[0]["last_obs"], info[1]["last_obs"])
    a, b = (np.load(tmp_path / f"worker{i}.npz") for i in range(2))
    assert a.files == b.files and a.files
    for key in a.files:
        np.testing.assert_array_equal(a[key], b[key])  # all-reduced: bit-identical everywhere
    # Only the chief's run folder exists, with its events and checkpoints; the other worker's
    # scratch folder is gone.
    run_dirs = list(logdir.iterdir())
    assert run_dirs == [Path(info[0]["folder"])]
    assert list(run_dirs[0].glob("events.out.tfevents.*"))
    assert list((run_dirs[0] / "checkpoints").glob("ckpt-128.index"))
    assert not Path(info[1]["folder"]).exists()
    assert not str(info[1]["folder"]).startswith(str(logdir))


def test_unknown_strategy_is_a_config_error_with_suggestion():
    from agents.ppo import PPOConfig

    with pytest.raises(ConfigError, match="distribute must be one of .*Did you mean: mirrored"):
        PPOConfig(distribute="mirored").validate()
    with pytest.raises(ConfigError, match="only applies to distribute=mirrored"):
        PPOConfig(devices=["/cpu:0"]).validate()


@pytest.mark.parametrize("value, message", [
    (None, "needs the TF_CONFIG environment variable"),
    ("{not json", "not valid JSON"),
    ('{"cluster": {"worker": ["localhost:1"]}}', "'cluster' mapping and a 'task' mapping"),
    ('{"cluster": {"worker": ["localhost:1"]}, "task": {"type": "worker", "index": 3}}',
     "not a member of the cluster"),
])
def test_multiworker_needs_a_valid_tf_config(monkeypatch, value, message):
    from rl_sever.core.distribute import get_strategy

    if value is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", value)
    with pytest.raises(ConfigError, match=message):
        get_strategy("multiworker")  # fails before any collective is configured


def test_offpolicy_agents_reject_distribute():
    from agents.sac import SAC

    with pytest.raises(ConfigError, match="supported for the on-policy agents"):
        SAC("Pendulum-v1", {"distribute": "mirrored"}, logdir=None)
