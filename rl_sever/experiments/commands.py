"""The commands of `rl-sever` that work over several runs (report, tune), called by
rl_sever.cli once it has parsed the arguments. User mistakes raise RLSeverError."""

from __future__ import annotations

import argparse

from rl_sever.errors import RLSeverError
from rl_sever.experiments.report import build_report, to_markdown, write_report


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
