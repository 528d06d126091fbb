"""Env runners on Ray (issue 23): throughput against the number of runners, simulated here.

    python -m bench.scaling --algos ppo sac --runners 1 2 4 8 16 --out bench/results_scaling.json

The env (`IOBound/Sleep-v0`, envs/io_bound.py) sleeps 5 ms a step and costs almost no CPU, so
runners of it stand for runners of a CPU-bound env on many machines. The cluster is two Ray
nodes on this machine (`ray.cluster_utils.Cluster`: a head and a second node, each with half
the runners' logical CPUs), so runners are placed, started and fed as on two hosts. Each
runner steps one sub-env (n_envs = runners); the learner trains as configured below, in the
driver process. Throughput is env steps per second of `learn()` after a warm-up call (runner
start-up, tracing), against `runners` times the one-runner figure (linear scaling).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

SETTINGS = {
    # Synchronous PPO: each runner returns 64 steps per iteration; one epoch of updates.
    "ppo": {"n_steps": 64, "batch_size": 64, "n_epochs": 1},
    # SAC: one gradient step per vector step (as many env steps as runners), after 256 steps.
    "sac": {"train_freq": 1, "gradient_steps": 1, "learning_starts": 256,
            "steps_per_iteration": 64, "batch_size": 64, "buffer_size": 100_000},
}
WARMUP_ITERATIONS = 3
MEASURED_SECONDS = 12.0


def cluster(runners_max: int):
    """A two-node Ray cluster on this machine, with a logical CPU per runner."""
    import ray
    from ray.cluster_utils import Cluster

    half = max(1, math.ceil(runners_max / 2))
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": half})
    c.add_node(num_cpus=half)
    ray.init(address=c.address, include_dashboard=False, log_to_driver=False)
    return c


def measure(algo: str, runners: int, sleep_ms: float) -> dict:
    from rl_sever.core.registry import get_agent_class

    klass = get_agent_class(algo)
    per_iteration = (SETTINGS[algo].get("n_steps") or SETTINGS[algo]["steps_per_iteration"])
    cfg = {**SETTINGS[algo], "n_envs": runners, "runners": runners, "seed": 0,
           "eval_episodes": 0, "audit": False, "network": {"hidden_sizes": [64, 64]}}
    agent = klass("IOBound/Sleep-v0", cfg, logdir=None)
    warm = WARMUP_ITERATIONS * per_iteration * runners
    if algo == "sac":
        warm = max(warm, SETTINGS["sac"]["learning_starts"] + per_iteration * runners)
    t0 = time.perf_counter()
    agent.learn(warm, progress=False)
    startup = time.perf_counter() - t0
    # Steps for about MEASURED_SECONDS at 1000 / sleep_ms steps/s per runner.
    steps = int(MEASURED_SECONDS * runners * 1000.0 / sleep_ms)
    steps = max(per_iteration * runners, steps // (per_iteration * runners) * per_iteration * runners)
    t0 = time.perf_counter()
    agent.learn(steps, progress=False)
    wall = time.perf_counter() - t0
    nodes = agent.collector.group.run_all("node")
    agent.close()
    return {"algo": algo, "runners": runners, "env_steps": steps, "wall_s": round(wall, 2),
            "steps_per_s": round(steps / wall, 1), "warmup_s": round(startup, 1),
            "runners_per_node": sorted(nodes.count(n) for n in set(nodes))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algos", nargs="+", default=["ppo", "sac"])
    parser.add_argument("--runners", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--sleep-ms", type=float, default=5.0)
    parser.add_argument("--out", default="bench/results_scaling.json")
    args = parser.parse_args()
    import ray

    c = cluster(max(args.runners))
    rows = []
    try:
        for algo in args.algos:
            base = None
            for n in args.runners:
                row = measure(algo, n, args.sleep_ms)
                base = base or row["steps_per_s"] / row["runners"]
                row["of_linear"] = round(row["steps_per_s"] / (base * n), 3)
                rows.append(row)
                print(json.dumps(row), flush=True)
    finally:
        ray.shutdown()
        c.shutdown()
    out = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                       "platform": platform.platform(), "processor": _cpu_name()},
           "simulated": "two Ray nodes on this machine (ray.cluster_utils.Cluster), "
                        f"IOBound/Sleep-v0 sleeping {args.sleep_ms} ms a step",
           "settings": SETTINGS, "date": time.strftime("%Y-%m-%d"), "results": rows}
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        return platform.processor()


if __name__ == "__main__":
    main()
