"""Env runners acting with their own policy copy against central inference (issue 23), on
pixels: PPO on an Atari game with N runners, `runner_inference` local then central, one
invocation.

    python -m bench.inference [--env ALE/Pong-v5] [--runners 2] [--iterations 6]

The Atari preset's network (Nature CNN) and preprocessing; 8 envs, 128-step rollouts and one
epoch of minibatches of 1,024, so acting weighs in the iteration as it does in a real run's
collection. Env steps per second of learn() after a warm-up iteration (runner start-up and
tracing excluded); the inference server's batched calls and requests. JSON to `--out`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def measure(env_id: str, runners: int, mode: str, iterations: int) -> dict:
    from rl_sever.config import presets
    from rl_sever.core.registry import get_agent_class

    klass = get_agent_class("ppo")
    cfg = presets.resolve(klass.config_cls, [
        presets.find("ppo", env_id) or {},
        {"n_envs": 8, "n_steps": 128, "n_epochs": 1, "batch_size": 1024, "runners": runners,
         "runner_inference": mode, "seed": 0, "eval_episodes": 0, "audit": False}])
    agent = klass(env_id, cfg, logdir=None)
    per_iteration = cfg.n_steps * cfg.n_envs
    t0 = time.perf_counter()
    agent.learn(per_iteration, progress=False)
    warmup = time.perf_counter() - t0
    t0 = time.perf_counter()
    agent.learn(iterations * per_iteration, progress=False)
    wall = time.perf_counter() - t0
    row = {"env_id": env_id, "runners": runners, "runner_inference": mode,
           "env_steps": iterations * per_iteration, "wall_s": round(wall, 2),
           "steps_per_s": round(iterations * per_iteration / wall, 1),
           "warmup_s": round(warmup, 1)}
    group = getattr(agent.collector, "group", None)
    if group is not None and group.server is not None:
        row["server"] = group.ray.get(group.server.stats.remote())
    agent.close()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="ALE/Pong-v5")
    parser.add_argument("--runners", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=6)
    parser.add_argument("--out", default="bench/results_inference.json")
    args = parser.parse_args()
    rows = []
    for runners, mode in [(0, "local"), (args.runners, "local"), (args.runners, "central")]:
        rows.append(measure(args.env, runners, mode, args.iterations))
        print(json.dumps(rows[-1]), flush=True)
    with open(args.out, "w") as f:
        json.dump({"machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                               "platform": platform.platform()},
                   "date": time.strftime("%Y-%m-%d"), "results": rows}, f, indent=1)


if __name__ == "__main__":
    main()
