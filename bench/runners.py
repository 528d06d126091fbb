"""Env runners on Ray (issue 23): their overhead against the local path, learning with them,
and a run whose runners are killed.

    python -m bench.runners overhead --runners 2 4 [--steps 1000000]   # local, then each N
    python -m bench.runners faults --kill-every 30 [--steps 200000]

`overhead`: PPO on LunarLander-v3 with its shipped preset (16 envs), the local path first,
then the same config with N runners (a local Ray, started by the run), one invocation, seed 0.
learn() is timed (Ray's start and the runners' start-up included), then 20 evaluation
episodes on fresh seeded envs. `faults`: the same PPO with 2 runners while a thread kills a
random runner process (SIGKILL) every `--kill-every` seconds; the run must complete, and its
restarts and dropped episodes are reported beside the evaluation. JSON to `--out`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ALGO, ENV_ID = "ppo", "LunarLander-v3"
EVAL_EPISODES = 20


def make(runners: int, seed: int, steps: int):
    from rl_sever.config import presets
    from rl_sever.core.registry import get_agent_class

    klass = get_agent_class(ALGO)
    cfg = presets.resolve(klass.config_cls, [presets.find(ALGO, ENV_ID) or {},
                                             {"runners": runners, "seed": seed,
                                              "total_steps": steps, "eval_episodes": 0}])
    return klass(ENV_ID, cfg, logdir=None)


def run(runners: int, seed: int, steps: int, kill_every: float = 0.0) -> dict:
    from rl_sever.core.evaluation import evaluate

    agent = make(runners, seed, steps)
    stop, kills = threading.Event(), []

    def killer():
        group = None
        while not stop.wait(kill_every):
            group = group or getattr(agent._collector, "group", None)
            if group is None:
                continue
            try:  # asked here, not through the group: its restart counts stay the learner's
                pids = group.ray.get([a.pid.remote() for a in group.actors], timeout=60)
            except Exception:  # a runner still restarting: try at the next tick
                continue
            os.kill(random.choice(pids), signal.SIGKILL)
            kills.append(round(time.perf_counter() - t0, 1))

    t0 = time.perf_counter()
    thread = threading.Thread(target=killer, daemon=True) if kill_every else None
    if thread is not None:
        thread.start()
    agent.learn(steps, progress=False)
    wall = time.perf_counter() - t0
    stop.set()
    ev = evaluate(agent, EVAL_EPISODES, seed=seed + 10_000)
    row = {"runners": runners, "seed": seed, "steps": steps, "wall_s": round(wall, 1),
           "eval_mean": round(ev["mean_reward"], 1), "eval_std": round(ev["std_reward"], 1)}
    if runners:
        group = agent.collector.group
        row.update(restarts=group.restarts, dropped_episodes=group.dropped_episodes,
                   kills_at_s=kills)
    agent.close()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["overhead", "faults"])
    parser.add_argument("--runners", type=int, nargs="+", default=[2])
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kill-every", type=float, default=30.0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    rows = []
    if args.mode == "overhead":
        steps = args.steps or 1_000_000
        for n in [0, *args.runners]:
            rows.append(run(n, args.seed, steps))
            rows[-1]["of_local_wall"] = round(rows[-1]["wall_s"] / rows[0]["wall_s"], 3)
            print(json.dumps(rows[-1]), flush=True)
    else:
        steps = args.steps or 200_000
        rows.append(run(args.runners[0], args.seed, steps, kill_every=args.kill_every))
        print(json.dumps(rows[-1]), flush=True)
    out = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                       "platform": platform.platform()},
           "date": time.strftime("%Y-%m-%d"), "case": f"{ALGO} {ENV_ID}, shipped preset",
           "mode": args.mode, "results": rows}
    with open(args.out or f"bench/results_runners_{args.mode}.json", "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
