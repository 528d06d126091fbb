"""How far the training loop is from the gradient tape: the Python calls (and the files they
are in) on the stack when a PPO iteration and a SAC gradient step open their tapes, counted
from the loop's frame (rl_sever/core/loop.py) to the frame that enters tf.GradientTape.

    python bench/call_depth.py [--out bench/call_depth.json]

TensorFlow's and Python's own frames (tracing, AutoGraph, functools) are not counted: only
frames of rl_sever/, agents/ and envs/.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path

import tensorflow as tf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import agents  # noqa: E402

OURS = ("rl_sever", "agents", "envs")


def ours(filename: str) -> str | None:
    path = Path(filename).resolve()
    try:
        rel = path.relative_to(ROOT)
    except ValueError:
        return None
    return str(rel) if rel.parts[0] in OURS else None


def depth_to_tape(algo: str, env_id: str, config: dict) -> dict:
    stacks = []
    original = tf.GradientTape.__enter__

    def entering(self):
        stacks.append([(ours(f.filename), f.name) for f in traceback.extract_stack()])
        return original(self)

    tf.GradientTape.__enter__ = entering
    try:
        agent = getattr(agents, algo.upper())(env_id, config, logdir=None)
        agent.learn(progress=False)
    finally:
        tf.GradientTape.__enter__ = original
    paths = []  # every distinct way from the loop to a tape (the audit's, the update's, ...)
    for stack in stacks:
        frames = [(f, n) for f, n in stack if f is not None]
        starts = [i for i, (f, n) in enumerate(frames) if f == "rl_sever/core/loop.py"]
        if starts and frames[starts[0]:] not in paths:
            paths.append(frames[starts[0]:])
    if not paths:
        raise RuntimeError(f"no tape opened under the loop for {algo}")
    longest = max(paths, key=len)
    return {"calls": len(longest), "files": len({f for f, _ in longest}),
            "paths": [[f"{f}:{n}" for f, n in path] for path in paths]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    out = {
        "ppo": depth_to_tape("ppo", "CartPole-v1", {"n_envs": 2, "n_steps": 16, "batch_size": 16,
                                                     "total_steps": 64, "eval_episodes": 0,
                                                     "audit": True}),
        "sac": depth_to_tape("sac", "Pendulum-v1", {"learning_starts": 32, "batch_size": 16,
                                                     "total_steps": 64, "eval_episodes": 0,
                                                     "audit": True, "train_freq": 2}),
    }
    for algo, found in out.items():
        print(f"{algo}: the longest way is {found['calls']} calls in {found['files']} files")
        for path in found["paths"]:
            print("  " + " -> ".join(path))
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
