"""The cost of evaluation during training (issue 25): the whole `rl-sever train` process with
the default evaluation (once, at the end) against the same run evaluating every 10% of its
steps (eval_every, 10 episodes each, best/ kept), alternated in one invocation.

    python -m bench.eval_cost [--reps 2] [--out bench/results_eval_cost.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

CASES = {  # name: (algo, env id, steps)
    "ppo_cartpole": ("ppo", "CartPole-v1", 100_000),
    "sac_pendulum": ("sac", "Pendulum-v1", 5_000),
}


def run(algo: str, env_id: str, steps: int, every: int, logdir: str) -> float:
    command = [sys.executable, "-m", "rl_sever.cli", "train", algo, env_id, "--steps",
               str(steps), "--no-progress", "--logdir", logdir, "--set", f"eval_every={every}"]
    t0 = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - t0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--out", default="bench/results_eval_cost.json")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as logdir:
        for name, (algo, env_id, steps) in CASES.items():
            off, on = [], []
            for _ in range(args.reps):  # alternated: drift hits both sides alike
                off.append(run(algo, env_id, steps, 0, logdir))
                on.append(run(algo, env_id, steps, steps // 10, logdir))
            row = {"case": name, "steps": steps, "evaluations_on": 10, "episodes_each": 10,
                   "off_s": [round(x, 2) for x in off], "on_s": [round(x, 2) for x in on],
                   "ratio_median": round(statistics.median(on) / statistics.median(off), 3)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    out = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                       "processor": platform.processor()}, "results": rows}
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
