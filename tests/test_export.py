"""`rl-sever export`: the SavedModel reproduces agent.predict exactly, and the ONNX and LiteRT
files within the check's tolerance (discrete actions exactly), in a fresh process that imports
only tensorflow, onnxruntime, ai-edge-litert and numpy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rl_sever import cli
from rl_sever.core.agent import Agent
from rl_sever.core.export import export_policy


def sets(*pairs: str) -> list[str]:
    return [arg for pair in pairs for arg in ("--set", pair)]


CASES = {
    # env id, extra CLI args (normalisation on for the continuous case)
    "cartpole": ("CartPole-v1", sets("n_steps=16", "batch_size=32")),
    "pendulum": (
        "Pendulum-v1",
        sets("n_steps=16", "batch_size=32", "normalize_obs=true", "normalize_reward=true"),
    ),
}

SCRIPT = """
import json, sys
import numpy as np
import tensorflow as tf
import onnxruntime
from ai_edge_litert.interpreter import Interpreter
for model_dir, obs_file, out_file in json.loads(sys.argv[1]):
    policy = tf.saved_model.load(model_dir)
    obs = np.load(obs_file)
    action = policy.signatures["serving_default"](observation=tf.constant(obs))["action"]
    np.save(out_file, action.numpy())
    if out_file.startswith("wide"):
        continue
    session = onnxruntime.InferenceSession(f"{model_dir}/policy.onnx")
    np.save("onnx_" + out_file, session.run(["action"], {"observation": obs})[0])
    lite = Interpreter(model_path=f"{model_dir}/policy.tflite").get_signature_runner()
    np.save("litert_" + out_file, lite(observation=obs)["action"])
leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("rl_sever", "agents", "envs"))
assert not leaked, leaked
print("fresh-process-ok")
"""


def observations(agent: Agent, n: int = 300) -> np.ndarray:
    """Visited-looking and extreme observations (far outside the normalisation clip)."""
    rng = np.random.default_rng(0)
    space = agent.env.single_observation_space
    if agent.normalizer is not None:
        space = agent.normalizer.env.single_observation_space
    low = np.maximum(space.low, -5.0)
    high = np.minimum(space.high, 5.0)
    obs = rng.uniform(low, high, size=(n, *space.shape))
    obs[:10] *= 1e3
    return obs.astype(space.dtype)


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """case -> (run dir, export dir), trained and exported through the CLI."""
    root = tmp_path_factory.mktemp("export")
    out = {}
    for case, (env_id, extra) in CASES.items():
        logdir = root / f"runs_{case}"
        argv = f"train ppo {env_id} --no-preset --n-envs 2 --steps 64 --no-progress".split()
        argv += ["--logdir", str(logdir)]
        argv += sets("n_epochs=2", "eval_episodes=0", "audit=false") + extra
        assert cli.main(argv) == 0
        (run_dir,) = logdir.iterdir()
        assert cli.main(["export", str(run_dir), str(root / f"model_{case}"), "--format", "all",
                         "--check", "200"]) == 0
        out[case] = (run_dir, root / f"model_{case}")
    return out


def test_metadata(exported):
    run_dir, model = exported["pendulum"]
    meta = json.loads((model / "metadata.json").read_text())
    assert (meta["algo"], meta["env_id"], meta["global_step"]) == ("ppo", "Pendulum-v1", 64)
    assert meta["normalize_obs"] is True
    assert meta["observation_space"]["shape"] == [3]
    assert meta["action_space"] == {
        "type": "Box",
        "shape": [1],
        "dtype": "float32",
        "low": [-2.0],
        "high": [2.0],
    }
    _, cartpole = exported["cartpole"]
    meta = json.loads((cartpole / "metadata.json").read_text())
    assert meta["action_space"]["n"] == 2 and meta["normalize_obs"] is False
    assert meta["observation_space"]["high"][1] == "inf"  # strict JSON: no Infinity
    assert (model / "saved_model.pb").is_file()
    assert set(meta["formats"]) == {"savedmodel", "onnx", "litert"}
    for entry in meta["formats"].values():
        assert (model / entry["file"]).is_file() and entry["check"]["passed"]
        assert entry["check"]["observations"] == 200 and entry["latency"]["ms_1"] > 0
    assert [i["name"] for i in meta["inputs"]] == ["observation"]
    assert meta["outputs"] == [{"name": "action", "shape": [None], "dtype": "int32"}]


def test_fresh_process_reproduces_predict(exported, tmp_path):
    jobs, expected = [], {}
    for case, (run_dir, model) in exported.items():
        agent = Agent.load(run_dir)
        obs = observations(agent)
        expected[case] = agent.predict(obs)
        agent.close()
        np.save(tmp_path / f"{case}_obs.npy", obs)
        jobs.append(
            (str(model), str(tmp_path / f"{case}_obs.npy"), f"{case}_act.npy")
        )
    # Actions far outside the Box bounds: exercises the clipping inside the graph.
    agent = Agent.load(exported["pendulum"][0])
    kernel = agent.model.pi.kernels[-1]
    kernel.assign(kernel * 1e4)
    export_policy(agent, tmp_path / "model_wide")
    obs = observations(agent)
    expected["wide"] = agent.predict(obs)
    agent.close()
    assert np.abs(expected["wide"]).max() == 2.0
    np.save(tmp_path / "wide_obs.npy", obs)
    jobs.append(
        (
            str(tmp_path / "model_wide"),
            str(tmp_path / "wide_obs.npy"),
            "wide_act.npy",
        )
    )

    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(jobs)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
        # No PYTHONPATH: the script must not even find the project checkout by accident.
        env={
            **{k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
            "TF_CPP_MIN_LOG_LEVEL": "3",
            "CUDA_VISIBLE_DEVICES": "",
        },
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "fresh-process-ok" in proc.stdout
    for case, want in expected.items():
        got = np.load(tmp_path / f"{case}_act.npy")
        assert got.dtype == want.dtype and got.shape == want.shape, case
        np.testing.assert_array_equal(got, want, err_msg=case)
        for fmt in ("onnx", "litert") if case != "wide" else ():
            got = np.load(tmp_path / f"{fmt}_{case}_act.npy").reshape(want.shape)
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=f"{case} {fmt}")
            assert got.dtype.kind == want.dtype.kind, (case, fmt)
    # Both actions occur, so the equality above compares decisions, not a constant policy.
    assert expected["cartpole"].dtype == np.int32 and set(np.unique(expected["cartpole"])) == {0, 1}


def test_export_refuses_a_foreign_folder(exported, tmp_path, capsys):
    run_dir, _ = exported["cartpole"]
    (tmp_path / "notes.txt").write_text("keep me")
    assert cli.main(["export", str(run_dir), str(tmp_path)]) == 2
    assert "holds no exported policy" in capsys.readouterr().err
    assert (tmp_path / "notes.txt").read_text() == "keep me"
