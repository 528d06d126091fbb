"""Returns at published budgets (issue 12): each case trains rl_sever with its shipped preset
(zoo values), then evaluates the deterministic policy over 20 episodes on fresh seeded envs,
next to the published reference (rl-baselines3-zoo benchmark.md, one agent, ~150k evaluation
steps). A case passes when its mean reaches the reference mean minus one reference std.

    python bench/returns.py [--cases ppo_cartpole sac_pendulum ...] [--seeds 0]
                            [--steps N] [--out bench/results_returns.json]
                            [--md bench/results_returns.md]

`--steps` overrides every selected case's budget (for the cases whose published budget does not
fit a 2-core machine); the JSON records the budget run and the published one. Timing covers
learn() only; no TensorBoard logging or checkpoints.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
EVAL_EPISODES = 20

# (algo, env id, published budget, reference mean, reference std); zoo figures were measured
# on LunarLander-v2 and HalfCheetah-v3, whose v3 / v5 successors only fixed bugs.
CASES = {
    "ppo_cartpole": ("ppo", "CartPole-v1", 100_000, 500.0, 0.0),
    "ppo_acrobot": ("ppo", "Acrobot-v1", 1_000_000, -73.5, 18.2),
    "ppo_lunarlander": ("ppo", "LunarLander-v3", 1_000_000, 242.0, 32.0),
    "a2c_lunarlander": ("a2c", "LunarLander-v3", 200_000, 156.0, 80.0),
    "sac_pendulum": ("sac", "Pendulum-v1", 20_000, -157.0, 89.0),
    "td3_pendulum": ("td3", "Pendulum-v1", 20_000, -152.0, 90.0),
    "sac_halfcheetah": ("sac", "HalfCheetah-v5", 1_000_000, 9535.0, 0.0),
    "td3_halfcheetah": ("td3", "HalfCheetah-v5", 1_000_000, 9656.0, 0.0),
    "ppo_breakout": ("ppo", "ALE/Breakout-v5", 10_000_000, 398.0, 33.0),
    "ppo_pong": ("ppo", "ALE/Pong-v5", 10_000_000, 21.0, 0.0),
}
FITS_HERE = ["ppo_cartpole", "ppo_acrobot", "ppo_lunarlander", "a2c_lunarlander",
             "sac_pendulum", "td3_pendulum"]


def run_case(name: str, seed: int, steps: int | None) -> dict:
    from rl_sever.config import presets
    from rl_sever.core.evaluation import evaluate
    from rl_sever.core.registry import get_agent_class

    algo, env_id, budget, ref_mean, ref_std = CASES[name]
    klass = get_agent_class(algo)
    steps = steps or budget
    layers = [presets.find(algo, env_id) or {},
              {"seed": seed, "total_steps": steps, "eval_episodes": 0}]
    agent = klass(env_id, presets.resolve(klass.config_cls, layers), logdir=None)
    t0 = time.perf_counter()
    agent.learn(steps, progress=False)
    wall = time.perf_counter() - t0
    ev = evaluate(agent, EVAL_EPISODES, seed=seed + 10_000)
    agent.close()
    threshold = ref_mean - ref_std
    return {"case": name, "algo": algo, "env_id": env_id, "seed": seed, "steps": steps,
            "published_budget": budget, "wall_time_s": round(wall, 1),
            "eval_mean": round(ev["mean_reward"], 2), "eval_std": round(ev["std_reward"], 2),
            "eval_episodes": ev["episodes"], "reference_mean": ref_mean, "reference_std": ref_std,
            "threshold": threshold, "full_budget": steps == budget,
            "reached": bool(ev["mean_reward"] >= threshold) if steps == budget else None,
            "full_budget_time_estimate_s": round(wall * budget / steps, 0)}


def markdown(rows: list[dict]) -> str:
    lines = ["| case | env steps (published) | rl_sever eval (20 ep.) | wall s | reference "
             "(zoo) | reached ref. mean - std |", "|---|---|---|---:|---|---|"]
    for r in rows:
        reached = {True: "yes", False: "**no**", None: "budget cut"}[r["reached"]]
        lines.append(f"| {r['case']} (seed {r['seed']}) | {r['steps']:,} ({r['published_budget']:,}) "
                     f"| {r['eval_mean']:.1f} ± {r['eval_std']:.1f} | {r['wall_time_s']:.0f} | "
                     f"{r['reference_mean']:g} ± {r['reference_std']:g} | {reached} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=FITS_HERE, choices=list(CASES))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--steps", type=int, default=None, help="override every case's budget")
    parser.add_argument("--out", default="bench/results_returns.json")
    parser.add_argument("--md", default="bench/results_returns.md")
    args = parser.parse_args(argv)
    rows = []
    for name in args.cases:
        for seed in args.seeds:
            rows.append(run_case(name, seed, args.steps))
            print(json.dumps(rows[-1]), flush=True)
            out = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                               "platform": platform.platform()}, "results": rows}
            with open(args.out, "w") as f:  # after every case: a long table survives a crash
                json.dump(out, f, indent=2)
            with open(args.md, "w") as f:
                f.write(markdown(rows))
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
