"""Rollout scaling on one host (issue 6): vector-env steps/s for sync, async (one process per
env) and async with 2 worker processes, and PPO training fps for the same three modes.

    python bench/rollout_scaling.py --out bench/results_rollout.json [--seconds 1.0]

Raw stepping: for each env (CartPole-v1, LunarLander-v3, HalfCheetah-v5 when mujoco is
importable) and n_envs in 2, 8, 32, an env from `envs.make_vec_env` (rl_sever's wrappers
included) steps with pre-drawn random actions. After 20 warm-up steps, three windows of
`--seconds` each are timed; the JSON keeps every window and the median (steps/s counts every
sub-env's step). Start-up (process creation) is timed separately and not included. The modes
run interleaved per window, so a change in the load of a shared machine hits them alike.

Step cost: the same on a CartPole-v1 whose every step also spins the CPU for 100 or 1,000 µs
(n_envs 8), standing in for a heavier simulator, to show where async starts to pay.

Training: PPO on CartPole-v1 (8 envs, n_steps 32, batch 256, 20 epochs: the configuration of
bench/ingraph.py) for `--train-steps` steps per mode; fps = steps after the first iteration /
time after the first iteration (the first pays the tracing).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import sys
import time

import gymnasium as gym

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.run import CASES as PPO_CASES  # noqa: E402

N_ENVS = (2, 8, 32)
BUSY_US = (100, 1000)  # extra CPU time per env step of the synthetic "heavier env"
BUSY_ID = "RlSeverBench/BusyCartPole-v0"
MODES = {  # name -> make_vec_env arguments
    "sync": {"vectorization": "sync"},
    "async": {"vectorization": "async", "n_workers": 0},
    "async_2_workers": {"vectorization": "async", "n_workers": 2},
}
# The issue-2 case 1 configuration of bench/run.py (its schedules do not change the fps).
PPO_CARTPOLE = dict(n_envs=8, **PPO_CASES["ppo_cartpole"]["kwargs"])


class Busy(gym.Wrapper):
    """Spins the CPU for `busy_us` microseconds on every step (a stand-in for physics)."""

    def __init__(self, env: gym.Env, busy_us: int) -> None:
        super().__init__(env)
        self.busy_s = busy_us * 1e-6

    def step(self, action):
        end = time.perf_counter() + self.busy_s
        while time.perf_counter() < end:
            pass
        return self.env.step(action)


def busy_cartpole(busy_us: int = 100) -> gym.Env:
    return Busy(gym.make("CartPole-v1"), busy_us)


if BUSY_ID not in gym.registry:
    gym.register(BUSY_ID, entry_point=busy_cartpole)


def env_ids() -> tuple[list[str], dict[str, str]]:
    """The envs to measure and the ones skipped, with the reason."""
    ids, skipped = ["CartPole-v1"], {}
    for env_id, module, extra in [
        ("LunarLander-v3", "Box2D", "box2d"),
        ("HalfCheetah-v5", "mujoco", "mujoco"),
    ]:
        if importlib.util.find_spec(module) is None:
            skipped[env_id] = f"{module} is not importable (pip install 'rl_sever[{extra}]')"
        else:
            ids.append(env_id)
    return ids, skipped


def time_window(env, actions, seconds: float) -> float:
    """Vector steps/s x num_envs over at least `seconds`."""
    steps, t0 = 0, time.perf_counter()
    while True:
        for a in actions:
            env.step(a)
        steps += len(actions)
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            return steps * env.num_envs / elapsed


def bench_stepping(
    env_id: str, n_envs: int, seconds: float, windows: int = 3, env_kwargs: dict | None = None
) -> dict:
    from envs import make_vec_env

    envs, startup = {}, {}
    try:
        for mode, kwargs in MODES.items():
            t0 = time.perf_counter()
            envs[mode] = make_vec_env(env_id, n_envs, seed=0, env_kwargs=env_kwargs, **kwargs)
            envs[mode].reset()
            startup[mode] = time.perf_counter() - t0
        space = envs["sync"].action_space
        space.seed(0)
        actions = [space.sample() for _ in range(64)]
        rates: dict[str, list[float]] = {mode: [] for mode in MODES}
        for env in envs.values():
            for a in actions[:20]:
                env.step(a)
        for _ in range(windows):
            for mode, env in envs.items():
                rates[mode].append(time_window(env, actions, seconds))
    finally:
        for env in envs.values():
            env.close()
    median = {mode: statistics.median(r) for mode, r in rates.items()}
    return {
        "env_id": env_id,
        **({"env_kwargs": env_kwargs} if env_kwargs else {}),
        "n_envs": n_envs,
        "steps_per_s": {m: round(v) for m, v in median.items()},
        "speedup_vs_sync": {m: round(v / median["sync"], 3) for m, v in median.items()},
        "windows": {m: [round(x) for x in r] for m, r in rates.items()},
        "startup_s": {m: round(v, 2) for m, v in startup.items()},
    }


def bench_training(mode: str, total_steps: int, seed: int = 0) -> dict:
    from agents import PPO, PPOConfig

    cfg = PPOConfig(
        **PPO_CARTPOLE,
        **MODES[mode],
        seed=seed,
        total_steps=total_steps,
        eval_episodes=0,
        audit=False,
    )
    agent = PPO("CartPole-v1", cfg, logdir=None)
    stamps: list[float] = []
    try:
        t0 = time.perf_counter()
        agent.learn(
            progress=False, callback=lambda agent, metrics: stamps.append(time.perf_counter())
        )
        wall = time.perf_counter() - t0
    finally:
        agent.close()
    per_iter = cfg.n_envs * cfg.n_steps
    fps = per_iter * (len(stamps) - 1) / (stamps[-1] - stamps[0])
    return {
        "mode": mode,
        "total_steps": total_steps,
        "wall_s": round(wall, 2),
        "first_iteration_s": round(stamps[0] - t0, 2),
        "fps_after_first": round(fps),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="bench/results_rollout.json")
    parser.add_argument("--seconds", type=float, default=1.0, help="length of one timed window")
    parser.add_argument("--train-steps", type=int, default=20_480)
    args = parser.parse_args(argv)

    ids, skipped = env_ids()
    result = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        },
        "skipped": skipped,
        "stepping": [],
        "step_cost": [],
        "training": [],
    }
    for env_id in ids:
        for n_envs in N_ENVS:
            row = bench_stepping(env_id, n_envs, args.seconds)
            result["stepping"].append(row)
            print(
                f"{env_id:16s} n_envs={n_envs:3d} steps/s {row['steps_per_s']} "
                f"speed-up {row['speedup_vs_sync']}",
                flush=True,
            )
    for busy_us in BUSY_US:
        row = bench_stepping(BUSY_ID, 8, args.seconds, env_kwargs={"busy_us": busy_us})
        result["step_cost"].append(row)
        print(
            f"CartPole-v1 +{busy_us:4d} us/step n_envs=  8 steps/s {row['steps_per_s']} "
            f"speed-up {row['speedup_vs_sync']}",
            flush=True,
        )
    for mode in MODES:
        row = bench_training(mode, args.train_steps)
        result["training"].append(row)
        print(
            f"PPO CartPole-v1 {mode:16s} fps {row['fps_after_first']} (wall {row['wall_s']} s)",
            flush=True,
        )
    result["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    for env_id, why in skipped.items():
        print(f"skipped {env_id}: {why}")
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
