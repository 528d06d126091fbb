"""Atari vectorization modes (issue 12): env steps per second of random play in one game with
n_envs sub-envs, Python wrappers (sync, async) against ale-py's C++ vector env (ale), all with
the same preprocessing and statistics (envs.atari, envs.atari_vector). Writes JSON.

    python bench/atari_vector.py [--env ALE/Breakout-v5] [--n-envs 8] [--steps 2000]
                                 [--out bench/results_atari_vector.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np


def measure(env_id: str, mode: str, n_envs: int, steps: int) -> dict:
    from envs import make_vec_env

    env = make_vec_env(env_id, n_envs, seed=0, vectorization=mode)
    env.reset()
    actions = [env.action_space.sample() for _ in range(64)]
    for i in range(50):  # warm-up: worker start, first frames
        env.step(actions[i % 64])
    t0 = time.perf_counter()
    for i in range(steps):
        env.step(actions[i % 64])
    wall = time.perf_counter() - t0
    env.close()
    return {"mode": mode, "n_envs": n_envs, "vector_steps": steps,
            "env_steps_per_s": round(n_envs * steps / wall, 1),
            "frames_per_s": round(4 * n_envs * steps / wall, 1)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="ALE/Breakout-v5")
    parser.add_argument("--n-envs", type=int, default=8)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--modes", nargs="+", default=["sync", "async", "ale"])
    parser.add_argument("--out", default="bench/results_atari_vector.json")
    args = parser.parse_args(argv)
    rows = [measure(args.env, m, args.n_envs, args.steps) for m in args.modes]
    sync = next((r["env_steps_per_s"] for r in rows if r["mode"] == "sync"), None)
    for r in rows:
        r["speedup_over_sync"] = round(r["env_steps_per_s"] / sync, 2) if sync else None
        print(json.dumps(r))
    with open(args.out, "w") as f:
        json.dump({"env_id": args.env, "cpus": os.cpu_count(), "load_average": os.getloadavg(),
                   "results": rows, "note": "random actions; preprocessing included"}, f, indent=2)
    return 0 if np.all([r["env_steps_per_s"] > 0 for r in rows]) else 1


if __name__ == "__main__":
    sys.exit(main())
