"""Foundation benchmarks (issue 2): PPO and A2C on CartPole-v1, optionally side by side with
Stable-Baselines3 on the identical configuration, in the same invocation.

    python bench/run.py --out bench/results.json [--sb3] [--cases ppo_cartpole a2c_cartpole]
                        [--seeds 0 1 2]

Timing covers learn() only (tracing and compilation included, evaluation excluded); no
TensorBoard logging or checkpoints on either side. Evaluation: deterministic policy, 10 episodes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

STEPS = 100_000

CASES = {
    # rl-baselines3-zoo's tuned CartPole-v1 PPO (the case 1).
    "ppo_cartpole": dict(algo="ppo", env_id="CartPole-v1", n_envs=8, kwargs=dict(
        n_steps=32, batch_size=256, n_epochs=20, gamma=0.98, gae_lambda=0.8, learning_rate=1e-3,
        lr_schedule="linear", clip_range=0.2, clip_schedule="linear", ent_coef=0.0)),
    # A2C with the library defaults (the case 2).
    "a2c_cartpole": dict(algo="a2c", env_id="CartPole-v1", n_envs=8, kwargs={}),
}


def run_rl_sever(case: dict, seed: int) -> dict:
    from rl_sever.core.evaluation import evaluate
    from rl_sever.core.registry import get_agent_class

    klass = get_agent_class(case["algo"])
    cfg = klass.config_cls(n_envs=case["n_envs"], seed=seed, total_steps=STEPS, eval_episodes=0,
                           **case["kwargs"])
    agent = klass(case["env_id"], cfg, logdir=None)
    t0 = time.perf_counter()
    agent.learn(STEPS, progress=False)
    wall = time.perf_counter() - t0
    ev = evaluate(agent, 10, seed=seed + 10_000)
    agent.close()
    return {"wall_time_s": round(wall, 3), "steps_per_s": round(STEPS / wall, 1),
            "eval_mean": ev["mean_reward"], "eval_std": ev["std_reward"]}


def run_sb3(case: dict, seed: int) -> dict:
    import torch
    from stable_baselines3 import A2C, PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy

    # One thread: for these tiny MLPs it is torch's fastest setting on a 2-core box, and
    # OpenMP spin-waiting threads slow both libraries down when they share the cores.
    torch.set_num_threads(1)
    kw = dict(case["kwargs"])
    if case["algo"] == "ppo":
        lr, clip = kw.pop("learning_rate"), kw.pop("clip_range")
        lin = lambda v: (lambda remaining: remaining * v)  # noqa: E731
        kw.pop("lr_schedule"), kw.pop("clip_schedule")
        kw.update(learning_rate=lin(lr) , clip_range=lin(clip))
    env = make_vec_env(case["env_id"], n_envs=case["n_envs"], seed=seed)
    model = {"ppo": PPO, "a2c": A2C}[case["algo"]]("MlpPolicy", env, seed=seed, device="cpu",
                                                     verbose=0, **kw)
    t0 = time.perf_counter()
    model.learn(STEPS)
    wall = time.perf_counter() - t0
    mean, std = evaluate_policy(model, make_vec_env(case["env_id"], n_envs=1, seed=seed + 10_000),
                                n_eval_episodes=10, deterministic=True)
    return {"wall_time_s": round(wall, 3), "steps_per_s": round(STEPS / wall, 1),
            "eval_mean": float(mean), "eval_std": float(std)}


def machine() -> dict:
    import gymnasium
    import tensorflow as tf

    info = {"python": platform.python_version(), "platform": platform.platform(),
            "cpus": os.cpu_count(), "tensorflow": tf.__version__, "gymnasium": gymnasium.__version__,
            "gpus": len(tf.config.list_physical_devices("GPU")),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}
    try:
        import stable_baselines3
        import torch

        info.update(stable_baselines3=stable_baselines3.__version__, torch=torch.__version__)
    except ImportError:
        pass
    return info


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results.json")
    parser.add_argument("--sb3", action="store_true", help="also run Stable-Baselines3 (bench extra)")
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="one run per seed and library, alternating (rl_sever, SB3, ...); "
                             "the ratio is the median of the per-seed ratios")
    args = parser.parse_args(argv)
    results = {"machine": machine(), "steps": STEPS, "seeds": args.seeds, "cases": {}}
    for name in args.cases:
        case = CASES[name]
        entry = {"algo": case["algo"], "env_id": case["env_id"], "n_envs": case["n_envs"],
                 "config": case["kwargs"], "rl_sever": [], "stable_baselines3": []}
        ratios = []
        for seed in args.seeds:
            entry["rl_sever"].append(dict(seed=seed, **run_rl_sever(case, seed)))
            if not args.sb3:
                continue
            try:
                entry["stable_baselines3"].append(dict(seed=seed, **run_sb3(case, seed)))
            except ImportError as e:
                entry["stable_baselines3"] = {"skipped": f"bench extra not installed ({e})"}
                args.sb3 = False
                continue
            ratios.append(entry["rl_sever"][-1]["wall_time_s"]
                          / entry["stable_baselines3"][-1]["wall_time_s"])
        if ratios:
            entry["time_ratio_rl_sever_over_sb3"] = round(float(np.median(ratios)), 3)
            entry["time_ratios_per_seed"] = [round(r, 3) for r in ratios]
        entry["load_average_at_end"] = round(os.getloadavg()[0], 2)
        results["cases"][name] = entry
        print(json.dumps({name: entry}, indent=2), flush=True)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=2)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
