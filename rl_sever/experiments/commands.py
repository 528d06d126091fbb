"""The commands of `rl-sever` that work over several runs (report, tune), called by
rl_sever.cli once it has parsed the arguments. User mistakes raise RLSeverError."""

from __future__ import annotations

import argparse

from rl_sever.core.commands import build_config
from rl_sever.errors import ConfigError, RLSeverError
from rl_sever.experiments.report import build_report, to_markdown, write_report
from rl_sever.experiments.seeds import child_argv
from rl_sever.experiments.seeds import train_seeds as train_seeds_of


def train_seeds(args: argparse.Namespace) -> int:
    """`rl-sever train ... --seeds SPEC`: one child process per seed."""
    if args.seeds is None:
        raise ConfigError("--jobs goes with --seeds (processes training seeds at once)")
    if args.resume or args.seed is not None:
        raise ConfigError("--seeds cannot be combined with --resume or --seed")
    if not args.algo or not args.env_id:
        raise ConfigError("train --seeds needs ALGO and ENV_ID")
    _, cfg, _ = build_config(args.algo, args.env_id, args)  # a bad setting fails once, here
    argv = [*args.argv]
    if argv and argv[0] == "train":
        argv = argv[1:]
    argv = child_argv(argv, {"--seeds": True, "--jobs": True, "--logdir": True,
                             "--no-progress": False})
    return train_seeds_of(argv, args.seeds, algo=args.algo, env_id=args.env_id,
                          jobs=args.jobs, logdir=args.logdir,
                          set_threads=cfg.intra_op_threads == "auto")


def report(args: argparse.Namespace) -> int:
    result = build_report(args.run_dirs, normalize=args.normalize, by=args.by)
    print(to_markdown(result))
    for path in result["skipped"]:
        print(f"skipped (no evaluations): {path}")
    written = write_report(result, args.out, pictures=not args.no_pictures)
    print("wrote " + ", ".join(str(p) for p in written.values()))
    return 0


def tune(args: argparse.Namespace) -> int:
    try:
        import optuna  # noqa: F401  (the `tune` extra)
    except ImportError:
        raise RLSeverError("rl-sever tune needs Optuna: pip install 'rl_sever[tune]'") from None
    from rl_sever.experiments.tune.command import run_tune

    return run_tune(args)
