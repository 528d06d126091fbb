"""Whole processes, as users wait for them (issue 26): `rl-sever train` with default settings
(TensorBoard logging, the final checkpoint, the final 10-episode evaluation) against a
Stable-Baselines3 process on the same resolved settings (import, build, learn(), save the
model, evaluate 10 episodes deterministically; SB3's defaults otherwise: no TensorBoard), in
one invocation, alternated, with the CPU's model and flags in the JSON.

    python -m bench.process [--cases ppo_cartpole ...] [--reps 2] [--no-sb3]
                            [--out bench/results_process.json]

Also timed: the start-up of `rl-sever train ppo CartPole-v1` (the process's start to its first
env step; inside that process, the time from TensorFlow's import to the first env step; and a
process that only imports TensorFlow). SB3 runs torch at its fastest thread
count here: 1 for PPO/A2C, 2 for SAC. The `bench` extra installs SB3.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
PRESETS = ROOT / "rl_sever" / "config" / "presets"

# name: (algo, env id rl_sever trains, steps, extra CLI arguments, SB3's env id, torch threads)
CASES = {
    "ppo_cartpole": ("ppo", "CartPole-v1", 100_000, [], "CartPole-v1", 1),
    "a2c_cartpole": ("a2c", "CartPole-v1", 100_000, [], "CartPole-v1", 1),
    "ppo_acrobot": ("ppo", "Acrobot-v1", 200_000, [], "Acrobot-v1", 1),
    "ppo_lunarlander": ("ppo", "LunarLander-v3", 1_000_000, [], "LunarLander-v3", 1),
    "sac_pendulum": ("sac", "Pendulum-v1", 20_000, [], "Pendulum-v1", 2),
    "sac_halfcheetah": ("sac", "HalfCheetah-v5", 15_000, ["--set", "learning_starts=5000"],
                        "HalfCheetah-v5", 2),
    # The in-graph env at 64 envs on the CartPole preset, against SB3's PPO on Gymnasium's
    # CartPole with that preset (8 envs), both 1M steps.
    "ppo_ingraph_cartpole": ("ppo", "tf:CartPole-v1", 1_000_000,
                             ["--config", str(PRESETS / "ppo" / "CartPole-v1.yaml"),
                              "--n-envs", "64"], "CartPole-v1", 1),
}
EVAL_EPISODES = 10  # rl-sever train's default final evaluation

# The first env step, seen from inside a process: `python -c FIRST_STEP ARGV...`. TensorFlow is
# imported first and stamped, the way the CLI imports it (plotting deferred, devices probed; the
# CLI's own call then finds it done), so the time beyond it is measured in the same process (the
# difference of two processes spreads by seconds on a noisy machine).
FIRST_STEP = """
import sys, time
print("TF_START", time.time(), flush=True)
from rl_sever.core.quiet import import_tensorflow_quietly
import_tensorflow_quietly()
print("TF_IMPORTED", time.time(), flush=True)
from envs.episodes import EpisodeStats
step = EpisodeStats.step
def first(self, action):
    if not getattr(EpisodeStats, "_seen", False):
        EpisodeStats._seen = True
        print("FIRST_STEP", time.time(), flush=True)
    return step(self, action)
EpisodeStats.step = first
from rl_sever.cli import run
run()
"""


def cpu() -> dict:
    from rl_sever.core.resources import bf16_matmuls_pay, cpu_info

    info = cpu_info()
    model = info.get("model name") or platform.processor()
    flags = info.get("flags", "").split()
    wanted = ("avx2", "avx512", "amx", "fma", "f16c")
    # Family and model number tell CPU generations apart where the name does not (a KVM
    # guest may see only "AMD EPYC": family 25 is Zen 3 or Zen 4, model 17 a Zen 4).
    return {"model": model, "vendor": info.get("vendor_id"), "family": info.get("cpu family"),
            "model_number": info.get("model"), "cores": os.cpu_count(),
            "platform": platform.platform(),
            "flags": sorted(f for f in flags if f.startswith(wanted)),
            "bfloat16_matmuls": bf16_matmuls_pay()}


def packages() -> dict:
    """Versions of what a process imports at start-up (ml_dtypes' import cost differs by
    version: docs/performance.md)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("tensorflow", "tensorflow-cpu", "tf-nightly", "keras", "numpy", "ml_dtypes",
                 "gymnasium", "stable_baselines3", "torch"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def env(threads: int | None = None) -> dict:
    out = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="",
               PYTHONPATH=str(ROOT))
    if threads:
        out["OMP_NUM_THREADS"] = str(threads)
    return out


def timed(command: list[str], **kwargs) -> tuple[float, str]:
    t0 = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, **kwargs)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[:6])}... failed:\n{done.stdout}\n{done.stderr}")
    return wall, done.stdout


def rl_sever_process(case: str, logdir: str) -> dict:
    algo, env_id, steps, extra, _, _ = CASES[case]
    command = [sys.executable, "-m", "rl_sever.cli", "train", algo, env_id, "--steps",
               str(steps), "--no-progress", "--logdir", logdir, *extra]
    wall, out = timed(command, env=env())
    found = re.search(r"^final evaluation: mean return (\S+)", out, re.M)
    return {"wall_s": round(wall, 2), "final_eval": float(found[1]) if found else None}


def sb3_settings(case: str) -> dict:
    """rl_sever's resolved settings of the case (preset, --set and --config layers) as plain
    JSON for the SB3 child, which imports neither TensorFlow nor rl_sever."""
    from rl_sever.config import presets
    from rl_sever.core.registry import get_agent_class

    algo, env_id, steps, extra, sb3_env, _ = CASES[case]
    klass = get_agent_class(algo)
    layers = [presets.find(algo, sb3_env) or {}]
    for flag, value in zip(extra[::2], extra[1::2]):
        if flag == "--set":
            key, raw = value.split("=", 1)
            layers.append({key: json.loads(raw)})
    return dataclasses.asdict(presets.resolve(klass.config_cls, layers))


def sb3_process(case: str, threads: int, folder: str) -> dict:
    settings = json.dumps(sb3_settings(case))
    command = [sys.executable, "-m", "bench.process", "--sb3-child", case, str(threads),
               folder, settings]
    wall, out = timed(command, env=env(threads))
    return {"wall_s": round(wall, 2), "torch_threads": threads,
            "final_eval": json.loads(out.strip().splitlines()[-1])["mean"]}


def sb3_child(case: str, threads: int, folder: str, settings: str) -> int:
    """The SB3 process: what a user's SB3 script does, on rl_sever's resolved settings."""
    import torch
    from stable_baselines3.common.evaluation import evaluate_policy

    from bench.returns import sb3_eval_env, sb3_model, sb3_train_env

    def namespace(value):
        if isinstance(value, dict):
            return SimpleNamespace(**{k: namespace(v) for k, v in value.items()})
        return value

    torch.set_num_threads(threads)
    algo, _, steps, _, env_id, _ = CASES[case]
    cfg = namespace(json.loads(settings))
    train_env = sb3_train_env(env_id, cfg, cfg.seed)
    model = sb3_model(algo, train_env, cfg, cfg.seed)
    model.learn(steps)
    model.save(os.path.join(folder, "model"))
    eval_env = sb3_eval_env(env_id, cfg.seed, train_env)
    mean, _ = evaluate_policy(model, eval_env, n_eval_episodes=EVAL_EPISODES,
                              deterministic=True)
    print(json.dumps({"mean": round(float(mean), 2)}), flush=True)
    return 0


def start_up(logdir: str) -> dict:
    """Seconds from the process's start to the first env step of `rl-sever train ppo
    CartPole-v1`; within that process, TensorFlow's import and the time from its end to the
    first env step; and a process that imports TensorFlow and nothing else."""
    t0_step = time.time()
    command = [sys.executable, "-c", FIRST_STEP, "train", "ppo", "CartPole-v1", "--steps",
               "4096", "--no-progress", "--logdir", logdir]
    _, out = timed(command, env=env())
    stamps = {line.split()[0]: float(line.split()[1]) for line in out.splitlines()
              if line.startswith(("TF_START", "TF_IMPORTED", "FIRST_STEP"))}
    # TensorFlow imported, seen from inside the process too (its exit would add a second).
    t0 = time.time()
    _, out = timed([sys.executable, "-c", "import time, tensorflow; print(time.time())"],
                   env=env())
    tf_only = float(out.split()[-1]) - t0
    return {"first_env_step_s": round(stamps["FIRST_STEP"] - t0_step, 2),
            "import_tensorflow_in_process_s": round(stamps["TF_IMPORTED"] - stamps["TF_START"], 2),
            "beyond_tensorflow_s": round(stamps["FIRST_STEP"] - stamps["TF_IMPORTED"], 2),
            "import_tensorflow_alone_s": round(tf_only, 2)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument("--no-sb3", action="store_true", help="rl_sever's processes only")
    parser.add_argument("--start-up-only", action="store_true", help="time the start-up only")
    parser.add_argument("--out", default="bench/results_process.json")
    parser.add_argument("--sb3-child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.sb3_child:
        case, threads, folder, settings = args.sb3_child
        return sb3_child(case, int(threads), folder, settings)
    machine = cpu()
    print(json.dumps({"cpu": machine["model"], "cores": machine["cores"]}), flush=True)
    rows, starts = [], []
    with tempfile.TemporaryDirectory() as logdir:
        for _ in range(args.reps):
            starts.append(start_up(logdir))
            print(json.dumps(starts[-1]), flush=True)
        for case in [] if args.start_up_only else args.cases:
            ours, theirs = [], []
            for _ in range(args.reps):  # alternated: drift hits both sides alike
                ours.append(rl_sever_process(case, logdir))
                if not args.no_sb3:
                    theirs.append(sb3_process(case, CASES[case][5], logdir))
            row = {"case": case, "steps": CASES[case][2], "rl_sever": ours, "sb3": theirs}
            if theirs:
                row["ratio_median"] = round(statistics.median(r["wall_s"] for r in ours)
                                            / statistics.median(r["wall_s"] for r in theirs), 3)
            rows.append(row)
            print(json.dumps(row), flush=True)
    out = {"date": time.strftime("%Y-%m-%d"), "cpu": machine, "packages": packages(),
           "start_up": starts,
           "results": rows}
    Path(args.out).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
