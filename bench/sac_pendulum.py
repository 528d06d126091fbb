"""Off-policy benchmark (issue 4): SAC and TD3 on Pendulum-v1, 20,000 steps, 1 env, learning
rate 1e-3, other settings at the usual (SB3) defaults; Stable-Baselines3 side by side on the
identical configuration when `import stable_baselines3` works (the `bench` extra).

    python bench/sac_pendulum.py [--out bench/results_offpolicy.json] [--steps 20000]
                                 [--algos sac td3] [--seed 0] [--no-sb3]

Timing covers learn() only (tracing, any XLA compilation and the random warm-up included,
evaluation excluded); no TensorBoard logging or checkpoints on either side. Evaluation:
deterministic policy, 10 episodes on fresh seeded envs. The machine's load average is
recorded around every run: the figures are only comparable between runs under similar load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ENV_ID = "Pendulum-v1"
LEARNING_RATE = 1e-3
EVAL_EPISODES = 10
SB3_REFERENCE = {
    "sac": {
        "steps_per_s": 132.0,
        "eval_mean": -165.0,
        "note": "SB3 2.9.2 / torch 2.13 CPU, measured on the 2-core development "
        "machine (docs: DESIGN.md)",
    }
}


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def run_rl_sever(algo: str, steps: int, seed: int) -> dict:
    from rl_sever.core.evaluation import evaluate
    from rl_sever.core.registry import get_agent_class

    klass = get_agent_class(algo)
    cfg = klass.config_cls(
        seed=seed, total_steps=steps, learning_rate=LEARNING_RATE, eval_episodes=0
    )
    agent = klass(ENV_ID, cfg, logdir=None)
    load_before = _load()
    t0, c0 = time.perf_counter(), time.process_time()
    agent.learn(steps, progress=False)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    load_after = _load()
    ev = evaluate(agent, EVAL_EPISODES, seed=seed + 10_000)
    out = {
        "wall_time_s": round(wall, 2),
        "steps_per_s": round(steps / wall, 1),
        "cpu_time_s": round(cpu, 2),
        "eval_mean": round(ev["mean_reward"], 2),
        "eval_std": round(ev["std_reward"], 2),
        "eval_episodes": ev["episodes"],
        "gradient_steps": int(agent.n_updates.numpy()),
        "jit_compile": agent.jit_compile,
        "matmul_precision": agent.matmul_precision,
        "intra_op_threads": agent.intra_op_threads,
        "load_average_before": load_before,
        "load_average_after": load_after,
        "config": {
            "learning_rate": cfg.learning_rate,
            "batch_size": cfg.batch_size,
            "buffer_size": cfg.buffer_size,
            "learning_starts": cfg.learning_starts,
            "train_freq": cfg.train_freq,
            "gradient_steps": cfg.gradient_steps,
            "tau": cfg.tau,
            "gamma": cfg.gamma,
            "hidden_sizes": cfg.network.hidden_sizes,
        },
    }
    agent.close()
    return out


def run_sb3(algo: str, steps: int, seed: int, threads: int) -> dict:
    import numpy as np
    import torch
    from stable_baselines3 import SAC, TD3
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.noise import NormalActionNoise

    torch.set_num_threads(threads)
    if algo == "sac":
        model = SAC("MlpPolicy", ENV_ID, learning_rate=LEARNING_RATE, seed=seed, verbose=0)
    else:  # TD3 with rl_sever's defaults: N(0, 0.1) exploration noise, [400, 300]
        noise = NormalActionNoise(np.zeros(1), 0.1 * np.ones(1))
        model = TD3(
            "MlpPolicy",
            ENV_ID,
            learning_rate=LEARNING_RATE,
            action_noise=noise,
            seed=seed,
            verbose=0,
        )
    load_before = _load()
    t0, c0 = time.perf_counter(), time.process_time()
    model.learn(steps)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    load_after = _load()
    mean, std = evaluate_policy(
        model, model.get_env(), n_eval_episodes=EVAL_EPISODES, deterministic=True
    )
    return {
        "wall_time_s": round(wall, 2),
        "steps_per_s": round(steps / wall, 1),
        "cpu_time_s": round(cpu, 2),
        "eval_mean": round(float(mean), 2),
        "eval_std": round(float(std), 2),
        "load_average_before": load_before,
        "load_average_after": load_after,
        "torch_threads": threads,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).with_name("results_offpolicy.json")))
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--algos", nargs="+", default=["sac", "td3"], choices=["sac", "td3"])
    parser.add_argument("--no-sb3", action="store_true", help="skip Stable-Baselines3")
    parser.add_argument("--torch-threads", type=int, default=os.cpu_count() or 1,
                        help="torch threads for SB3 (default: every core)")
    args = parser.parse_args(argv)

    import tensorflow as tf

    from rl_sever.core.resources import has_bf16_matrix_units

    try:
        import stable_baselines3

        sb3_version = stable_baselines3.__version__
    except ImportError:
        sb3_version = None
    results: dict = {
        "benchmark": f"{ENV_ID}, {args.steps} steps, 1 env, learning rate {LEARNING_RATE}",
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "tensorflow": tf.__version__,
            "amx_bf16": has_bf16_matrix_units(),
        },
        "sb3_reference": SB3_REFERENCE,
        "runs": {},
    }
    for algo in args.algos:
        entry = {"rl_sever": run_rl_sever(algo, args.steps, args.seed)}
        print(f"rl_sever {algo}: {entry['rl_sever']}", flush=True)
        if args.no_sb3:
            entry["sb3"] = {"skipped": "--no-sb3"}
        elif sb3_version is None:
            entry["sb3"] = {
                "skipped": "stable_baselines3 is not installed (install the `bench` "
                "extra to run it side by side)"
            }
        else:
            entry["sb3"] = dict(run_sb3(algo, args.steps, args.seed, args.torch_threads),
                                version=sb3_version)
            entry["speedup_vs_sb3"] = round(
                entry["rl_sever"]["steps_per_s"] / entry["sb3"]["steps_per_s"], 2
            )
            # CPU seconds per step depend much less on other processes than wall time does.
            entry["cpu_time_ratio_sb3_over_rl_sever"] = round(
                entry["sb3"]["cpu_time_s"] / entry["rl_sever"]["cpu_time_s"], 2
            )
            print(f"sb3 {algo}: {entry['sb3']}", flush=True)
        if algo in SB3_REFERENCE:
            entry["speedup_vs_sb3_reference"] = round(
                entry["rl_sever"]["steps_per_s"] / SB3_REFERENCE[algo]["steps_per_s"], 2
            )
        results["runs"][algo] = entry
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
