"""Deployed policies (issue 24): each format's latency and size against Stable-Baselines3's
documented ONNX route, the return a quantised policy keeps, and `rl-sever export` on a run of
every shipped preset.

    python -m bench.export latency
    python -m bench.export returns RUN_DIR... [--episodes 20]
    python -m bench.export presets [--only ppo]

`latency`: PPO's MLP (64x64, CartPole-v1) and the Nature CNN (BreakoutNoFrameskip-v4), exported
as SavedModel, ONNX, LiteRT float32/float16/int8; SB3's PPO of the same architecture exported
the way its docs show (torch.onnx.export of `policy(obs, deterministic=True)`, opset 17) and
run by ONNX Runtime, torch at 1 thread; and a SavedModel whose function is one add, called the
same way (TensorFlow's own per-call cost). Each runtime's own call on one observation (median of
500 after 50 warm-up calls; ONNX Runtime's default session, LiteRT's interpreter with as many
threads as cores, as ONNX Runtime uses), all in one invocation.
`returns`: each run's greedy policy exported (ONNX; LiteRT float32, float16, int8) and driving
its env for `--episodes` evaluation episodes (the evaluation protocol of `rl-sever eval`, same
seeds), beside agent.predict. `presets`: every shipped preset trained for one iteration into a
run folder, then `rl-sever export RUN OUT --format all --quantize int8` in-process.
JSON to `--out`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

CASES = {"mlp": ("CartPole-v1", "MlpPolicy"), "cnn": ("BreakoutNoFrameskip-v4", "CnnPolicy")}


def cpu() -> str:
    with open("/proc/cpuinfo") as f:
        names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    flags = open("/proc/cpuinfo").read()
    extras = [f for f in ("avx512f", "avx512_bf16", "amx_bf16") if f" {f}" in flags]
    return f"{names[0] if names else platform.processor()} ({', '.join(extras) or 'no AVX-512'})"


def median_ms(call, calls: int = 500, warmup: int = 50) -> float:
    for _ in range(warmup):
        call()
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return round(1e3 * float(np.median(times)), 4)


def ours(case: str, root: Path) -> dict:
    import onnxruntime
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    from rl_sever.config import presets
    from rl_sever.core.registry import get_agent_class
    from rl_sever.deploy import export
    from rl_sever.deploy.formats import size_bytes

    env_id = CASES[case][0]
    klass = get_agent_class("ppo")
    layers = [presets.find("ppo", env_id) or {}] if case == "cnn" else []
    agent = klass(env_id, presets.resolve(klass.config_cls, layers or [{"n_envs": 1}]), logdir=None)
    export(agent, root / case, "all", quantize="int8", check=200, latency=False)
    export(agent, root / f"{case}_f16", "litert", quantize="float16", check=200, latency=False)
    space = agent.env.single_observation_space
    obs = np.asarray(space.sample())[None]
    agent.close()
    served = tf.saved_model.load(str(root / case)).signatures["serving_default"]
    tensor = tf.constant(obs)
    session = onnxruntime.InferenceSession(str(root / case / "policy.onnx"))
    rows = {"savedmodel": (lambda: served(observation=tensor), size_bytes(root / case, "savedmodel"))}
    floor = one_add_savedmodel(root / f"{case}_floor", obs)
    rows["savedmodel_one_add"] = (lambda: floor(observation=tensor),
                                  size_bytes(root / f"{case}_floor", "savedmodel"))
    rows["onnx"] = (lambda: session.run(["action"], {"observation": obs}),
                    (root / case / "policy.onnx").stat().st_size)
    for label, path in (("litert", root / case / "policy.tflite"),
                        ("litert_float16", root / f"{case}_f16" / "policy_float16.tflite"),
                        ("litert_int8", root / case / "policy_int8.tflite")):
        # As many threads as ONNX Runtime's default (the cores); LiteRT's default is one.
        runner = Interpreter(model_path=str(path), num_threads=os.cpu_count()).get_signature_runner()
        rows[label] = (lambda r=runner: r(observation=obs), path.stat().st_size)
    return {label: {"ms_1": median_ms(call), "bytes": size} for label, (call, size) in rows.items()}


def one_add_savedmodel(path: Path, obs: np.ndarray):
    """A SavedModel whose serving function adds one to the observation, loaded and called as
    the policy's is: TensorFlow's own cost of a call, below which no SavedModel goes."""
    import tensorflow as tf

    module = tf.Module()
    module.serve = tf.function(lambda observation: {"action": observation + 1},
                               input_signature=[tf.TensorSpec([None, *obs.shape[1:]], obs.dtype)])
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return tf.saved_model.load(str(path)).signatures["serving_default"]


def sb3(case: str, root: Path) -> dict:
    import onnxruntime
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import VecFrameStack

    torch.set_num_threads(1)
    env_id, policy = CASES[case]
    env = VecFrameStack(make_atari_env(env_id, n_envs=1), 4) if case == "cnn" else env_id
    model = PPO(policy, env, device="cpu")

    class Onnxable(torch.nn.Module):  # SB3's docs, "Exporting models": ONNX
        def __init__(self, policy):
            super().__init__()
            self.policy = policy

        def forward(self, observation):
            return self.policy(observation, deterministic=True)

    shape = model.observation_space.shape
    dummy = torch.zeros((1, *shape), dtype=torch.float32)
    path = root / f"sb3_{case}.onnx"
    torch.onnx.export(Onnxable(model.policy), dummy, str(path), opset_version=17,
                      input_names=["input"], dynamo=False)
    session = onnxruntime.InferenceSession(str(path))
    obs = np.asarray(model.observation_space.sample(), np.float32)[None]
    return {"sb3_onnx": {"ms_1": median_ms(lambda: session.run(None, {"input": obs})),
                         "bytes": path.stat().st_size}}


def latency(args) -> dict:
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for case in CASES:
            rows[case] = {**ours(case, Path(tmp)), **sb3(case, Path(tmp))}
            base = rows[case]["sb3_onnx"]["ms_1"]
            for entry in rows[case].values():
                entry["of_sb3_onnx"] = round(entry["ms_1"] / base, 3)
            print(case, json.dumps(rows[case]), flush=True)
    return rows


class Exported:
    """What `evaluate` needs of an agent, answered by an exported file's runtime."""

    def __init__(self, agent, runtime):
        self.env_id, self.config, self.layout = agent.env_id, agent.config, agent.layout
        self.masked, self.runtime = False, runtime

    def predict(self, obs, deterministic=True):
        return self.runtime({"observation": np.asarray(obs)})["action"]


def returns(args) -> dict:
    from rl_sever.core.agent import Agent
    from rl_sever.core.evaluation import evaluate
    from rl_sever.deploy import export
    from rl_sever.deploy.formats import load

    rows = {}
    for run_dir in args.runs:
        agent = Agent.load(run_dir)
        seed = agent.config.seed + 10_000
        row = {"env_id": agent.env_id, "step": int(agent.global_step.numpy()),
               "agent": evaluate(agent, args.episodes, seed=seed)["mean_reward"]}
        with tempfile.TemporaryDirectory() as tmp:
            for q in ("float16", "int8"):
                out = Path(tmp) / q
                report = export(agent, out, ["onnx", "litert"], quantize=q, check=200)
                targets = [("litert", None), (f"litert_{q}", q)] + ([("onnx", None)] if q == "int8" else [])
                for label, quantize in targets:
                    fmt = label.split("_")[0]
                    result = evaluate(Exported(agent, load(fmt, out, quantize)), args.episodes,
                                      seed=seed)
                    row[label] = result["mean_reward"]
                    row[f"{label}_bytes"] = report["formats"][label]["bytes"]
                    row[f"{label}_check"] = {k: v for k, v in report["formats"][label]["check"]
                                             .items() if k != "worst"}
        for q in ("float16", "int8"):
            row[f"litert_{q}_of_float32"] = round(row[f"litert_{q}"] / row["litert"], 3) \
                if row["litert"] else None
        agent.close()
        rows[str(run_dir)] = row
        print(json.dumps(row), flush=True)
    return rows


def presets_mode(args) -> dict:
    from rl_sever import cli
    from rl_sever.config import presets

    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for algo, env_id in presets.available():
            if args.only and algo not in args.only:
                continue
            env = "BreakoutNoFrameskip-v4" if env_id == "Atari" else env_id
            logdir = Path(tmp) / f"{algo}_{env.replace('/', '_')}"
            extra = ["--set", "learning_starts=64"] if algo in ("sac", "td3", "tqc", "crossq") else []
            t0 = time.perf_counter()
            code = cli.main(["train", algo, env, "--steps", "1", "--no-progress", "--logdir",
                             str(logdir), "--set", "eval_episodes=0", "--set", "audit=false",
                             *extra])
            row = {"train_exit": code}
            if code == 0:
                (run_dir,) = logdir.iterdir()
                row["export_exit"] = cli.main(["export", str(run_dir), str(logdir / "policy"),
                                               "--format", "all", "--quantize", "int8",
                                               "--check", "200"])
                if row["export_exit"] == 0:
                    meta = json.loads((logdir / "policy" / "metadata.json").read_text())
                    row["formats"] = {k: v["check"]["passed"] for k, v in meta["formats"].items()}
            row["seconds"] = round(time.perf_counter() - t0, 1)
            rows[f"{algo} {env_id}"] = row
            print(algo, env_id, json.dumps(row), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["latency", "returns", "presets"])
    parser.add_argument("runs", nargs="*", help="returns: run folders")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--only", nargs="*", default=[], help="presets: these algorithms")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    rows = {"latency": latency, "returns": returns, "presets": presets_mode}[args.mode](args)
    import onnxruntime
    import tensorflow as tf

    out = {"machine": {"cpu": cpu(), "cpus": os.cpu_count(), "python": platform.python_version(),
                       "tensorflow": tf.__version__, "onnxruntime": onnxruntime.__version__},
           "date": time.strftime("%Y-%m-%d"), "mode": args.mode, "results": rows}
    with open(args.out or f"bench/results_export_{args.mode}.json", "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
