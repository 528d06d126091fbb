"""In-graph training benchmark (issue 6): PPO on tf:CartPole-v1, fully compiled, against the
Gymnasium path on CartPole-v1 with the same hyperparameters, with and without XLA; and the
throughput of the fused PPO iteration as the number of envs grows.

    python bench/ingraph.py --out bench/results_ingraph.json [--seeds 0 1 2] [--sb3]

Case 1 (the foundation's PPO CartPole configuration, 8 envs, 100,000 steps): each variant
trains through `agent.learn` (no TensorBoard, no checkpoints, audit off so every variant
compiles only what it trains with). A callback timestamps every iteration; the first
iteration pays the tracing/compilation, so

    compile_s = first iteration - median iteration,   train_s = learn() wall time - compile_s.

Evaluation: the deterministic policy on Gymnasium's own CartPole-v1 (10 episodes, seeded),
for every variant, through rl_sever.core.evaluation.evaluate. The variants run interleaved per seed,
so a change in the load of a shared machine hits them alike.

Scaling: for n_envs in 8, 64, 512, 4096 (n_steps 32; one minibatch of the whole rollout per
epoch, 20 epochs, i.e. case 1 scaled up), the steps/s of the fused iteration (rollout + GAE +
update), of the in-graph rollout alone, and of one Gymnasium-path iteration (Python rollout
through the vector env + the compiled update), after a warm-up call.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from types import SimpleNamespace

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.run import CASES as PPO_CASES  # noqa: E402

STEPS = 100_000
# The issue-2 case 1 configuration, as bench/run.py runs it on the Gymnasium path.
CASE1 = dict(n_envs=8, **PPO_CASES["ppo_cartpole"]["kwargs"])
SCALING_ENVS = (8, 64, 512, 4096)
SB3_REFERENCE_S = 15.2  # DESIGN.md, same 2-core machine class, not this invocation


def evaluate_on_gymnasium(agent, seed: int) -> dict:
    from rl_sever.core.evaluation import evaluate

    # evaluate() only needs env_id and predict: run the policy on Gymnasium's CartPole-v1.
    view = SimpleNamespace(env_id="CartPole-v1", predict=agent.predict)
    return evaluate(view, 10, seed=seed + 10_000)


def run_case1(env_id: str, jit: bool, seed: int) -> dict:
    from agents import PPO, PPOConfig

    cfg = PPOConfig(
        **CASE1, seed=seed, total_steps=STEPS, eval_episodes=0, audit=False, jit_compile=jit
    )
    agent = PPO(env_id, cfg, logdir=None)
    stamps = []
    t0 = time.perf_counter()
    agent.learn(progress=False, callback=lambda agent, metrics: stamps.append(time.perf_counter()))
    wall = time.perf_counter() - t0
    iters = [b - a for a, b in zip([t0, *stamps], stamps)]
    median = statistics.median(iters[1:])
    compile_s = max(iters[0] - median, 0.0)
    ev = evaluate_on_gymnasium(agent, seed)
    out = {
        "env_id": env_id,
        "jit_compile": jit,
        "seed": seed,
        "in_graph": agent.ingraph is not None,
        "learn_wall_s": round(wall, 3),
        "compile_s": round(compile_s, 3),
        "train_s": round(wall - compile_s, 3),
        "train_steps_per_s": round(STEPS / (wall - compile_s), 1),
        "median_iteration_ms": round(1000 * median, 3),
        "iterations": len(iters),
        "eval_mean": ev["mean_reward"],
        "eval_std": ev["std_reward"],
        "load_average_after": round(os.getloadavg()[0], 2),
    }
    if agent.ingraph is not None:
        out["fused_tracing_count"] = agent.ingraph.iteration_fn.experimental_get_tracing_count()
    agent.close()
    return out


def _timed(fn, repeats: int, min_seconds: float = 2.0) -> tuple[float, float]:
    """(first call s, mean s of the further calls): at least `repeats` calls and `min_seconds`
    of them (small iterations are short and the machine may be shared); results forced to host.
    """
    import tensorflow as tf

    t = time.perf_counter()
    tf.nest.map_structure(lambda x: x.numpy(), fn())
    first = time.perf_counter() - t
    calls, t = 0, time.perf_counter()
    while calls < repeats or time.perf_counter() - t < min_seconds:
        tf.nest.map_structure(lambda x: x.numpy(), fn())
        calls += 1
    return first, (time.perf_counter() - t) / calls


def run_scaling(n_envs: int, jit: bool, repeats: int, gym_path: bool) -> dict:
    import tensorflow as tf

    from agents import PPO, PPOConfig

    rollout = n_envs * CASE1["n_steps"]
    kwargs = dict(CASE1, n_envs=n_envs, batch_size=rollout)
    cfg = PPOConfig(**kwargs, seed=0, eval_episodes=0, audit=False, jit_compile=jit)
    agent = PPO("tf:CartPole-v1", cfg, logdir=None)
    trainer = agent.ingraph
    trainer.state.start(0)
    first, per = _timed(trainer.iteration_fn, repeats)
    # The rollout alone, compiled like the fused iteration (rollout_fn itself never uses XLA).
    rollout_fn = tf.function(trainer._rollout, input_signature=[], jit_compile=jit)
    _, roll = _timed(rollout_fn, repeats)
    out = {
        "n_envs": n_envs,
        "jit_compile": jit,
        "steps_per_iteration": rollout,
        "fused_first_call_s": round(first, 3),
        "fused_iteration_ms": round(1000 * per, 3),
        "fused_steps_per_s": round(rollout / per, 1),
        "rollout_only_steps_per_s": round(rollout / roll, 1),
    }
    agent.close()
    if gym_path and not jit:
        agent = PPO("CartPole-v1", PPOConfig(**kwargs, seed=0, eval_episodes=0), logdir=None)
        collector = agent.collector
        agent.train(collector.collect().batch)  # warm-up: traces act and update
        calls, t = 0, time.perf_counter()
        while calls < repeats or time.perf_counter() - t < 2.0:
            agent.train(collector.collect().batch)  # Python floats: the update has finished
            calls += 1
        per = (time.perf_counter() - t) / calls
        out["gymnasium_path_steps_per_s"] = round(rollout / per, 1)
        agent.close()
    return out


def machine() -> dict:
    import platform

    import gymnasium
    import tensorflow as tf

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "tensorflow": tf.__version__,
        "gymnasium": gymnasium.__version__,
        "gpus": len(tf.config.list_physical_devices("GPU")),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def summarize(runs: list[dict]) -> dict:
    keys = ("learn_wall_s", "compile_s", "train_s", "median_iteration_ms", "eval_mean")
    return {k: round(statistics.mean(r[k] for r in runs), 3) for k in keys} | {
        "eval_means": [r["eval_mean"] for r in runs]
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results_ingraph.json")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--scaling-envs", type=int, nargs="*", default=list(SCALING_ENVS))
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per scaling point")
    parser.add_argument("--no-gym-scaling", action="store_true", help="skip the Gymnasium path")
    parser.add_argument("--sb3", action="store_true", help="also run Stable-Baselines3 (case 1)")
    args = parser.parse_args(argv)

    results = {"machine": machine(), "steps": STEPS, "config": CASE1, "case1": {}, "scaling": []}
    variants = {
        "gymnasium": ("CartPole-v1", False),
        "ingraph": ("tf:CartPole-v1", False),
        "ingraph_xla": ("tf:CartPole-v1", True),
    }
    # Variants interleaved per seed, so a change in the machine's load hits them alike.
    runs = {name: [] for name in variants}
    for seed in args.seeds:
        for name, (env_id, jit) in variants.items():
            runs[name].append(run_case1(env_id, jit, seed))
            print(json.dumps({name: runs[name][-1]}), flush=True)
    for name in variants:
        results["case1"][name] = {"runs": runs[name], "mean": summarize(runs[name])}
    base = results["case1"]["gymnasium"]["mean"]["train_s"]
    results["case1"]["speedup_train_s_over_gymnasium"] = {
        name: round(base / results["case1"][name]["mean"]["train_s"], 2)
        for name in ("ingraph", "ingraph_xla")
    }
    results["case1"]["sb3_reference_s"] = {
        "wall_s": SB3_REFERENCE_S,
        "note": "DESIGN.md figure (SB3 2.9.2, torch CPU), not measured in this invocation",
    }
    if args.sb3:
        try:
            sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
            from run import CASES, run_sb3  # bench/run.py

            results["case1"]["stable_baselines3"] = run_sb3(CASES["ppo_cartpole"], args.seeds[0])
        except ImportError as e:
            results["case1"]["stable_baselines3"] = {"skipped": f"bench extra not installed ({e})"}
    for n in args.scaling_envs:
        for jit in (False, True):
            row = run_scaling(n, jit, args.repeats, not args.no_gym_scaling)
            results["scaling"].append(row)
            print(json.dumps(row), flush=True)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=2)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
