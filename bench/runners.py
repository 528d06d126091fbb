"""Env runners on Ray (issue 23): their overhead against the local path, learning with them,
and a run whose runners are killed.

    python -m bench.runners overhead --runners 2 4 [--impala 4] [--steps 1000000]
    python -m bench.runners faults --env CartPole-v1 --kill-every 5 [--steps 200000]
    python -m bench.runners startup --env CartPole-v1 --runners 2 [--reps 3] [--algo sac]

`overhead`: PPO on `--env` (LunarLander-v3) with its shipped preset, the local path first,
then the same config with N runners (a local Ray, started by the run), then (`--impala N`)
IMPALA with N asynchronous runners at the same env steps (IMPALA_CONFIG, or its preset), one
invocation, seed 0. learn() is timed (Ray's start and the runners' start-up included), then
20 evaluation episodes on fresh seeded envs. `faults`: the same PPO with 2 runners while a
thread kills a random runner process (SIGKILL) every `--kill-every` seconds; the run must
complete, and its restarts and dropped episodes are reported beside the evaluation; `--seeds`
adds local runs of those seeds for the seed-to-seed spread. `startup`: `--algo` (PPO) with N
runners on a Ray started once beforehand, alternating runners without TensorFlow (the default
where they apply) and runners with a copy of the agent: the time from creating the runners to
their first rollout (off-policy: first chunk) back at the learner, and each runner process's
resident memory then. JSON to `--out`.
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

EVAL_EPISODES = 20
# IMPALA on LunarLander-v3 (no published setting): A2C's zoo preset (5-step unrolls, gamma
# 0.995, RMSprop at 8.3e-4 decaying linearly, entropy 1e-5, gradient norm 0.5) on 16 envs.
# Locally, 1M steps, seed 0: 43.7; the paper's settings (20-step unrolls, eps 0.01, clip 40,
# entropy 0.01) gave -114, and 20-step unrolls with these settings -146.
IMPALA_CONFIG = {"LunarLander-v3": {"n_envs": 16, "n_steps": 5, "gamma": 0.995,
                                    "learning_rate": 8.3e-4, "lr_schedule": "linear",
                                    "ent_coef": 1e-5, "max_grad_norm": 0.5, "adam_eps": 1e-5}}


def make(algo: str, env_id: str, runners: int, seed: int, steps: int, extra: dict | None = None):
    from rl_sever.config import presets
    from rl_sever.core.registry import get_agent_class

    klass = get_agent_class(algo)
    layers = [presets.find(algo, env_id) or {}]
    if algo == "impala":
        layers.append(IMPALA_CONFIG.get(env_id, {}))
    layers.append({**(extra or {}), "runners": runners, "seed": seed, "total_steps": steps,
                   "eval_episodes": 0})
    return klass(env_id, presets.resolve(klass.config_cls, layers), logdir=None)


def run(algo: str, env_id: str, runners: int, seed: int, steps: int,
        kill_every: float = 0.0, extra: dict | None = None) -> dict:
    from rl_sever.core.evaluation import evaluate

    agent = make(algo, env_id, runners, seed, steps, extra)
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
    row = {"algo": algo, "env_id": env_id, "runners": runners, "seed": seed, "steps": steps,
           "wall_s": round(wall, 1), "steps_per_s": round(steps / wall, 1),
           "eval_mean": round(ev["mean_reward"], 1), "eval_std": round(ev["std_reward"], 1)}
    if runners:
        group = agent.collector.group
        row.update(restarts=group.restarts, dropped_episodes=group.dropped_episodes,
                   kills_at_s=kills)
        if algo == "impala":
            row["updates"] = agent.collector.version
    agent.close()
    return row


def _rss_mib(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            kib = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        return round(kib / 1024, 1)
    except (OSError, StopIteration):
        return None


def startup(algo: str, env_id: str, runners: int, seed: int, numpy_runners: bool,
            extra: dict) -> dict:
    """Runners made, and their first rollout back (see the module docstring)."""
    from rl_sever.runners import group

    original = group.host_runner_plans
    if not numpy_runners:
        group.host_runner_plans = lambda agent, central: None
    try:
        agent = make(algo, env_id, runners, seed, 1_000_000, extra)
        if hasattr(agent, "target_steps"):  # off-policy chunks stop at the run's target
            agent.target_steps.assign(1_000_000)
        start = time.perf_counter()
        collector = agent.collector  # the runners are created here...
        collector.collect()  # ... and have all delivered one rollout here
        wall = time.perf_counter() - start
        pids = collector.group.pids()
        row = {"algo": algo, "env": env_id, "runners": runners, "without_tensorflow": collector.group.without_tensorflow,
               "first_rollout_s": round(wall, 3), "runner_rss_mib": [_rss_mib(p) for p in pids]}
        agent.close()
        return row
    finally:
        group.host_runner_plans = original


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["overhead", "faults", "startup"])
    parser.add_argument("--env", default="LunarLander-v3")
    parser.add_argument("--runners", type=int, nargs="+", default=[2])
    parser.add_argument("--impala", type=int, default=0, help="also IMPALA with N runners")
    parser.add_argument("--seeds", type=int, nargs="*", default=[],
                        help="faults: local runs of these seeds for the spread")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reps", type=int, default=3, help="startup: pairs of runs")
    parser.add_argument("--algo", default="ppo", help="startup: the algorithm")
    parser.add_argument("--kill-every", type=float, default=30.0)
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="config values over the preset (e.g. n_envs=2), every run alike")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    import yaml

    extra = {k: yaml.safe_load(v) for k, _, v in (s.partition("=") for s in args.sets)}
    rows = []
    if args.mode == "overhead":
        steps = args.steps or 1_000_000
        todo = [("ppo", n) for n in [0, *args.runners]]
        todo += [("impala", args.impala)] if args.impala else []
        for algo, n in todo:
            rows.append(run(algo, args.env, n, args.seed, steps, extra=extra))
            rows[-1]["of_local_wall"] = round(rows[-1]["wall_s"] / rows[0]["wall_s"], 3)
            print(json.dumps(rows[-1]), flush=True)
    elif args.mode == "startup":
        import ray

        ray.init(num_cpus=max(4, args.runners[0]), include_dashboard=False, log_to_driver=False)
        for _ in range(args.reps):
            for numpy_runners in (True, False):
                rows.append(startup(args.algo, args.env, args.runners[0], args.seed,
                                    numpy_runners, extra))
                print(json.dumps(rows[-1]), flush=True)
        ray.shutdown()
    else:
        steps = args.steps or 200_000
        rows.append(run("ppo", args.env, args.runners[0], args.seed, steps,
                        kill_every=args.kill_every, extra=extra))
        print(json.dumps(rows[-1]), flush=True)
        for seed in args.seeds:
            rows.append(run("ppo", args.env, 0, seed, steps, extra=extra))
            print(json.dumps(rows[-1]), flush=True)
    from bench.process import cpu

    out = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                       "platform": platform.platform(), "cpu": cpu()},
           "date": time.strftime("%Y-%m-%d"),
           "case": f"{args.env}, shipped presets" + (f" with {extra}" if extra else ""),
           "mode": args.mode, "results": rows}
    with open(args.out or f"bench/results_runners_{args.mode}.json", "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
