"""The `rl-sever` command line: parsing only; the commands are rl_sever.core.commands.

User mistakes (unknown names, bad config values, missing run folders, ...) raise
RLSeverError; `main` prints them as `error: <message>` and returns their exit code (2),
without a traceback. TensorFlow is imported after parsing, so `rl-sever --help` stays fast.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import os
import sys
import warnings
from collections.abc import Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is first imported

from rl_sever.errors import RLSeverError  # noqa: E402

EXIT_INTERRUPTED = 130


def build_config(algo: str, env_id: str | None, args: argparse.Namespace):
    """(agent class, resolved config, whether a preset was applied) of ALGO on ENV_ID."""
    from rl_sever.core import commands

    return commands.build_config(algo, env_id, args)


def _add_overrides(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE.yaml",
                   help="YAML file of config values (over the preset)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", default=[],
                   help="override one config key, e.g. --set n_steps=128 "
                   "--set network.hidden_sizes=[32,32]")
    p.add_argument("--loss", action="append", metavar="SPEC", default=[],
                   help="edit the objective (repeatable, after config key losses): -NAME "
                   "removes a term, +PKG.MOD:ATTR[@W] adds one, NAME=PKG.MOD:ATTR[@W] "
                   "replaces one, NAME@W reweights one")
    p.add_argument("--seed", type=int, help="random seed (config key seed)")
    p.add_argument("--no-preset", action="store_true", help="ignore rl_sever's tuned preset")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rl-sever", allow_abbrev=False,
        description="Train, evaluate, export and audit actor-critic agents on "
        "Gymnasium environments.",
        epilog="Details: rl-sever COMMAND --help; config keys: rl-sever config ALGO.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # No abbreviated options: `--seeds` passes the options on to its processes as written.
    sub.add_parser = functools.partial(sub.add_parser, allow_abbrev=False)
    algos = "a name from `rl-sever list`, or a class path my_module:MyAgent"

    p = sub.add_parser(
        "train", help="train an agent (or resume a run)",
        description="Train ALGO on ENV_ID. Config precedence: defaults < preset < "
        "--config < --set < --seed/--n-envs/--steps.")
    p.add_argument("algo", nargs="?", metavar="ALGO", help=f"algorithm: {algos}")
    p.add_argument("env_id", nargs="?", metavar="ENV_ID", help="Gymnasium environment id")
    _add_overrides(p)
    p.add_argument("--steps", type=int, help="env steps to train (with --resume: N more steps)")
    p.add_argument("--n-envs", type=int, help="parallel environments (config key n_envs)")
    p.add_argument("--logdir", help="root folder of run folders (default: runs)")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="continue the run in RUN_DIR from its latest checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--help-config", action="store_true",
                   help="list every config key of ALGO and exit")
    p.add_argument("--seeds", metavar="SEEDS",
                   help="train once per seed (e.g. 0-4 or 0,3,7), each a run folder, in "
                   "parallel processes; one summary at the end (docs/reporting.md)")
    p.add_argument("--jobs", type=int, help="with --seeds: processes at once (default: cores)")
    p.set_defaults(command_fn="train")

    p = sub.add_parser("eval", help="evaluate a trained run's greedy policy")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--episodes", type=int, default=10, help="episodes to run (default 10)")
    p.add_argument("--render", action="store_true", help="show the episodes in a window")
    p.add_argument("--video", metavar="DIR",
                   help="record each episode as an MP4 file in DIR (the video extra)")
    p.add_argument("--seed", type=int,
                   help="env seed (default: the run's seed + 10000, as in training)")
    p.set_defaults(command_fn="eval")

    p = sub.add_parser(
        "plot", help="draw learning curves of runs into an image",
        description="Draw METRIC against environment steps from the runs' TensorBoard event "
        "files. Runs of the same algorithm and env are drawn as their mean with a band of one "
        "standard deviation (--per-run: one line each).")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--out", default="curves.png", help="image file (.png, .svg, .pdf; "
                   "default curves.png)")
    p.add_argument("--metric", default="rollout/ep_rew_mean",
                   help="scalar tag to draw (default rollout/ep_rew_mean)")
    p.add_argument("--per-run", action="store_true", help="one line per run, no averaging")
    p.add_argument("--smooth", type=float, default=0.0,
                   help="TensorBoard-style smoothing weight in [0, 1) (default 0)")
    p.add_argument("--title", help="title of the picture (default: the metric)")
    p.add_argument("--band", choices=["std", "ci"], default="std",
                   help="several runs of a case: mean ± one std (default), or their IQM with a "
                   "bootstrap 95%% confidence interval (ci)")
    p.set_defaults(command_fn="plot")

    p = sub.add_parser(
        "report", help="IQM, mean and median with 95%% confidence intervals over seeds",
        description="Per case (runs of one algorithm on one env), the final and the best "
        "evaluation return over its runs as mean, median and interquartile mean with stratified "
        "bootstrap 95%% confidence intervals; a Markdown table on stdout, and report.md, "
        "report.json, curves.png and profile.png in --out (docs/reporting.md).")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                   help="run folders, or folders holding them (a --seeds group)")
    p.add_argument("--out", default="report", help="folder to write into (default report)")
    p.add_argument("--normalize", choices=["zoo", "human"],
                   help="also score (return - random) / (reference - random): zoo returns, or "
                   "Atari's human scores")
    p.add_argument("--by", choices=["case", "folder"], default="case",
                   help="group runs by algorithm and env (default), or by the folder given")
    p.add_argument("--no-pictures", action="store_true", help="only the table and the JSON")
    p.set_defaults(command_fn="report", command_module="rl_sever.experiments.commands")

    p = sub.add_parser(
        "tune", help="search hyperparameters with Optuna (TPE, pruning on evaluations)",
        description="Tune ALGO on ENV_ID: trials of --budget env steps each, sampled by TPE "
        "from the algorithm's search space (the zoo's ranges, or --space FILE), pruned on the "
        "evaluations they make while training. The study lives in a folder under --logdir "
        "(resume a killed tune with --resume DIR); the best values are written as best.yaml "
        "for `rl-sever train --config` (docs/tuning.md).")
    p.add_argument("algo", nargs="?", metavar="ALGO", help=f"algorithm: {algos}")
    p.add_argument("env_id", nargs="?", metavar="ENV_ID", help="Gymnasium environment id")
    _add_overrides(p)
    p.add_argument("--n-envs", type=int, help="parallel environments (config key n_envs)")
    p.add_argument("--trials", type=int, help="trials to finish in all (default 50)")
    p.add_argument("--budget", type=int, help="env steps per trial (default: the config's "
                   "total_steps)")
    p.add_argument("--timeout", type=float, metavar="MINUTES",
                   help="start no trial after this many minutes (running ones finish)")
    p.add_argument("--jobs", type=int, help="trials at once, in processes (default 1)")
    p.add_argument("--pruner", choices=["median", "halving", "none"], default="median",
                   help="stop weak trials at their evaluations (default median)")
    p.add_argument("--evals", type=int, help="evaluations per trial (default 5)")
    p.add_argument("--eval-episodes", type=int, help="episodes per evaluation (default 5)")
    p.add_argument("--space", metavar="FILE", help="a search space YAML file of your own")
    p.add_argument("--logdir", help="root folder of tune folders (default: runs)")
    p.add_argument("--resume", metavar="DIR", help="continue the tune in DIR")
    p.set_defaults(command_fn="tune", command_module="rl_sever.experiments.commands")

    p = sub.add_parser(
        "export", help="write the greedy policy as SavedModel, ONNX or LiteRT, checked",
        description="Write the run's greedy policy (raw observations in, env actions out, "
        "its preprocessing inside) into OUT_DIR with metadata.json; check every format "
        "against the agent on observations from the env and its own rollouts; print each "
        "format's size and latency. Exit 2 if a format cannot be written or does not act as "
        "the agent does.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("out_dir", metavar="OUT_DIR")
    p.add_argument("--format", dest="formats", action="append", metavar="FORMAT",
                   help="savedmodel (default), onnx, litert or all; repeat or comma-separate")
    p.add_argument("--quantize", choices=["float16", "int8"],
                   help="also a quantised LiteRT file (int8: calibrated on env observations)")
    p.add_argument("--stochastic", action="store_true",
                   help="also output the distribution's parameters and a sampled action")
    p.add_argument("--check", type=int, default=1000, metavar="N",
                   help="observations to check every format on (default 1000; 0: no check)")
    p.set_defaults(command_fn="export")

    p = sub.add_parser(
        "audit", help="print the gradient-flow matrix and contract verdict",
        description="Build ALGO on ENV_ID, collect one batch and audit every loss "
        "against the agent's flow contract. Exit 0 if it holds, 1 on a violation.")
    p.add_argument("algo", metavar="ALGO", help=f"algorithm: {algos}")
    p.add_argument("env_id", metavar="ENV_ID")
    _add_overrides(p)
    p.set_defaults(command_fn="audit")

    p = sub.add_parser("list", help="list algorithms and presets")
    p.set_defaults(command_fn="list")

    p = sub.add_parser("config", help="list every config key of ALGO with its default and help")
    p.add_argument("algo", metavar="ALGO", help=f"algorithm: {algos}")
    p.add_argument("env_id", nargs="?", metavar="ENV_ID", help="show values with this env's preset")
    _add_overrides(p)
    p.set_defaults(command_fn="config")
    return parser


def _join_loss_values(argv: list[str]) -> list[str]:
    """`--loss -entropy` -> `--loss=-entropy`: argparse would take `-entropy` for an option."""
    out, rest = [], iter(argv)
    for arg in rest:
        value = next(rest, None) if arg == "--loss" else None
        out.append(arg if value is None else f"--loss={value}")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `rl-sever`; returns the process exit code."""
    argv = _join_loss_values(list(sys.argv[1:] if argv is None else argv))
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help or a usage error: argparse has printed it already
        return int(e.code or 0) if not isinstance(e.code, str) else 2
    # Users' modules (my_module:MyAgent, loss specs) are found from the working folder, as
    # `python -m` would; last, so they never shadow an installed package.
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    # Warnings reach a CLI user as one line each (e.g. a checkpoint fallback).
    warnings.formatwarning = lambda message, *_, **__: f"warning: {message}\n"
    from rl_sever.core.quiet import import_tensorflow_quietly

    import_tensorflow_quietly()  # every command builds agents or reads event files
    if args.command_fn == "train" and (args.seeds is not None or args.jobs is not None):
        args.command_fn, args.command_module = "train_seeds", "rl_sever.experiments.commands"
    # After TensorFlow's quiet start-up: rl_sever.core.commands, or those above the core.
    commands = importlib.import_module(getattr(args, "command_module", "rl_sever.core.commands"))
    args.argv = argv
    try:
        return getattr(commands, args.command_fn)(args)
    except RLSeverError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        # The training loop has saved a checkpoint and printed how to resume.
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def run() -> None:
    """The `rl-sever` command (and `python -m rl_sever.cli`): `main`, then the exit Python
    makes (threads joined, atexit handlers run, streams flushed) without tearing down the
    interpreter, which took about 1 s of every run with TensorFlow loaded. Every file of the
    run is closed by then. RL_SEVER_FULL_EXIT=1 keeps the full teardown (e.g. for profilers
    that write their results at interpreter exit)."""
    code = main()
    if os.environ.get("RL_SEVER_FULL_EXIT") == "1":
        sys.exit(code)
    quick_exit(code)


def quick_exit(code: int) -> None:
    import atexit
    import threading

    # What interpreter shutdown does first: the threading module's own exit hooks (e.g.
    # concurrent.futures' executors) and then every non-daemon thread joined.
    shutdown = getattr(threading, "_shutdown", None)
    if shutdown is not None:
        shutdown()
    else:
        for thread in threading.enumerate():
            if thread is not threading.main_thread() and not thread.daemon:
                thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, OSError, ValueError):  # `rl-sever ... | head`, a closed stream
            pass
    os._exit(code)


if __name__ == "__main__":
    run()
