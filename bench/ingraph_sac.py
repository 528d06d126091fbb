"""In-graph SAC benchmark (issue 6): SAC trained fully in-graph on tf:Pendulum-v1 against the
Gymnasium path on Pendulum-v1, same hyperparameters (bench/sac_pendulum.py's: 20,000 steps,
1 env, learning rate 1e-3, other settings at their defaults), with and without XLA; and the
in-graph throughput at 1, 8 and 64 envs.

    python bench/ingraph_sac.py [--out bench/results_ingraph_sac.json] [--steps 20000]
                                [--seed 0] [--jit both|on|off] [--no-gym]

Main case: each variant trains through `agent.learn` (audit on, as by default; no TensorBoard,
no checkpoints). Timing covers learn() only: tracing, XLA compilation and the random warm-up
included, evaluation excluded. For the in-graph variants the chunk is compiled before learn()
by a call that runs zero env steps (it changes no state), timed as `compile_s` and added to
`wall_time_s`; `first_update_s` is the first agent.train call (the audited update, which traces
the ordinary compiled update once). Evaluation: the deterministic policy on Gymnasium's own
Pendulum-v1, 10 episodes on fresh seeded envs.

Throughput: n_envs 1, 8, 64; batch 256, one gradient step per VECTOR step (train_freq 1,
gradient_steps 1, so 1/n gradient steps per env step: what is held constant is the update work
per chunk of 100 vector steps), audit off. After a warm-up learn() of 2 chunks (compilation,
buffer past learning_starts), steps/s over 3 more chunks (repeated until 2 s have passed). Also
"collection only": the same chunks with learning_starts beyond the run (uniform random actions,
env step, store; no update).
The machine's load average is recorded: figures are comparable only under similar load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

ENV_ID = "Pendulum-v1"
LEARNING_RATE = 1e-3
EVAL_EPISODES = 10
THROUGHPUT_ENVS = (1, 8, 64)
CHUNK = 100  # vector steps per chunk (steps_per_iteration's default)
MIN_SECONDS = 2.0  # shortest throughput measurement


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _sac(env_id: str, **overrides):
    from rl_sever.core.registry import get_agent_class

    klass = get_agent_class("sac")
    cfg = klass.config_cls(learning_rate=LEARNING_RATE, eval_episodes=0, **overrides)
    return klass(env_id, cfg, logdir=None)


def run_main(in_graph: bool, jit: bool, steps: int, seed: int) -> dict:
    import tensorflow as tf

    from rl_sever.core.evaluation import evaluate

    agent = _sac(
        ("tf:" if in_graph else "") + ENV_ID, seed=seed, total_steps=steps, jit_compile=jit
    )
    first_update = []
    train = agent.train

    def timed_train(batch):  # times the first (audited) update: the ordinary update's trace
        t = time.perf_counter()
        out = train(batch)
        if not first_update:
            first_update.append(time.perf_counter() - t)
        return out

    agent.train = timed_train
    load_before = _load()
    t0, c0 = time.perf_counter(), time.process_time()
    compile_s = None
    if in_graph:  # zero env steps: traces and compiles the chunk, changes nothing
        agent.ingraph.chunk_fn(tf.constant(0), tf.constant(False))
        compile_s = time.perf_counter() - t0
    agent.learn(steps, progress=False)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    load_after = _load()
    ev = evaluate(
        SimpleNamespace(env_id=ENV_ID, predict=agent.predict), EVAL_EPISODES, seed=seed + 10_000
    )
    out = {
        "path": "in-graph tf:" + ENV_ID if in_graph else "Gymnasium " + ENV_ID,
        "jit_compile": jit,
        "wall_time_s": round(wall, 2),
        "steps_per_s": round(steps / wall, 1),
        "cpu_time_s": round(cpu, 2),
        "compile_s": None if compile_s is None else round(compile_s, 2),
        "first_update_s": round(first_update[0], 2) if first_update else None,
        "eval_mean": round(ev["mean_reward"], 2),
        "eval_std": round(ev["std_reward"], 2),
        "gradient_steps": int(agent.n_updates.numpy()),
        "load_average_before": load_before,
        "load_average_after": load_after,
    }
    agent.close()
    return out


def run_throughput(n_envs: int, jit: bool, in_graph: bool, collect_only: bool) -> dict:
    vec = n_envs * CHUNK
    agent = _sac(
        ("tf:" if in_graph else "") + ENV_ID,
        seed=0,
        n_envs=n_envs,
        jit_compile=jit,
        audit=False,
        learning_starts=10**9 if collect_only else 100,
    )
    agent.learn(2 * vec, progress=False)  # compile; fill past learning_starts
    updates = int(agent.n_updates.numpy())
    steps, t = 0, time.perf_counter()
    while steps < 3 * vec or time.perf_counter() - t < MIN_SECONDS:  # a short window is noise
        agent.learn(3 * vec, progress=False)
        steps += 3 * vec
    dt = time.perf_counter() - t
    out = {
        "steps_per_s": round(steps / dt, 1),
        "gradient_steps": int(agent.n_updates.numpy()) - updates,
        "load_average": _load(),
    }
    agent.close()
    return out


def machine() -> dict:
    import tensorflow as tf

    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "tensorflow": tf.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).with_name("results_ingraph_sac.json")))
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--jit",
        choices=["both", "on", "off"],
        default="both",
        help="XLA variants of the in-graph runs",
    )
    parser.add_argument("--no-gym", action="store_true", help="skip the Gymnasium-path run")
    parser.add_argument("--no-throughput", action="store_true")
    args = parser.parse_args(argv)
    jits = {"both": [False, True], "on": [True], "off": [False]}[args.jit]

    results: dict = {
        "benchmark": f"SAC {ENV_ID}, {args.steps} steps, 1 env, learning rate {LEARNING_RATE}",
        "machine": machine(),
        "main": {},
        "throughput": {
            "held_constant": "batch 256, 1 gradient step per vector step "
            f"(train_freq 1, gradient_steps 1), chunks of {CHUNK} vector steps",
            "rows": [],
        },
    }
    for jit in jits:
        name = f"ingraph{'_xla' if jit else ''}"
        results["main"][name] = run_main(True, jit, args.steps, args.seed)
        print(name, results["main"][name], flush=True)
    if not args.no_gym:  # the Gymnasium path with its default (XLA for flat observations)
        results["main"]["gymnasium"] = run_main(False, True, args.steps, args.seed)
        print("gymnasium", results["main"]["gymnasium"], flush=True)
        gym_sps = results["main"]["gymnasium"]["steps_per_s"]
        for name in [k for k in results["main"] if k.startswith("ingraph")]:
            results["main"][name]["speedup_vs_gymnasium"] = round(
                results["main"][name]["steps_per_s"] / gym_sps, 2
            )
    if not args.no_throughput:
        for n in THROUGHPUT_ENVS:
            row: dict = {"n_envs": n}
            for jit in jits:
                tag = "_xla" if jit else ""
                row[f"ingraph{tag}"] = run_throughput(n, jit, True, False)
                row[f"ingraph{tag}_collect_only"] = run_throughput(n, jit, True, True)
            if not args.no_gym:
                row["gymnasium"] = run_throughput(n, True, False, False)
            results["throughput"]["rows"].append(row)
            print(row, flush=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
