"""The `rl-sever` command line: train, eval, plot, export, audit, list, config.

User mistakes (unknown names, bad config values, missing run folders, ...) raise
RLSeverError; `main` prints them as `error: <message>` and returns their exit code (2),
without a traceback. TensorFlow is imported only by the commands that need it, so
`rl-sever --help` and `rl-sever list` stay fast.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is first imported

from rl_sever.config import presets  # noqa: E402
from rl_sever.config.fields import describe_config  # noqa: E402
from rl_sever.config.resolve import build_config, override_layers  # noqa: E402
from rl_sever.core.registry import algorithm_names  # noqa: E402
from rl_sever.errors import ConfigError, RLSeverError  # noqa: E402

EXIT_VIOLATION = 1
EXIT_INTERRUPTED = 130
def _print_config_help(algo: str, env_id: str | None, args: argparse.Namespace) -> int:
    klass, cfg, used_preset = build_config(algo, env_id, args)
    defaults = dict((k, v) for k, v, _ in describe_config(klass.config_cls()))
    source = f" with the {klass.algo}/{env_id} preset" if used_preset else ""
    print(f"{klass.algo} config keys{source} (set with --set key=value or a --config YAML file):\n")
    for key, value, doc in describe_config(cfg):
        changed = "" if value == defaults.get(key) else f"   (default {defaults.get(key)!r})"
        print(f"  {key} = {value!r}{changed}\n      {doc}")
    return 0


# -- commands ---------------------------------------------------------------------------------
def _cmd_train(args: argparse.Namespace) -> int:
    if args.help_config:
        if not args.algo:
            raise ConfigError("--help-config needs ALGO (e.g. rl-sever train ppo --help-config)")
        return _print_config_help(args.algo, args.env_id, args)
    if args.resume:
        agent = _resume_agent(args)
    else:
        if not args.algo or not args.env_id:
            raise ConfigError("train needs ALGO and ENV_ID (or --resume RUN_DIR)")
        klass, cfg, used_preset = build_config(args.algo, args.env_id, args)
        if used_preset:
            print(
                f"using the {klass.algo}/{args.env_id} preset (tuned hyperparameters; "
                "--no-preset to start from the defaults)"
            )
        # Builds the env and networks: an invalid env id or space fails here, before any
        # run folder exists (the agent creates it lazily in learn()).
        agent = klass(args.env_id, cfg, logdir=args.logdir or "runs")
    try:
        start, target = int(agent.global_step.numpy()), int(agent.target_steps.numpy())
        progress = False if args.no_progress else None
        if args.resume and args.steps is None and start >= target:
            print(
                f"{agent.run_dir} already reached its target of {target:,} steps; "
                "pass --steps N to train N more"
            )
            return 0
        if args.resume:
            if args.steps is not None:
                agent.target_steps.assign(start + args.steps)
            print(
                f"resuming {agent.run_dir} at step {start:,} "
                f"(target {int(agent.target_steps.numpy()):,})"
            )
            agent.continue_learning(progress=progress)
        else:
            agent.learn(progress=progress)
        _report_training(agent)
    finally:
        agent.close()
    return 0


def _resume_agent(args: argparse.Namespace):
    from rl_sever.core import rundir
    from rl_sever.core.agent import Agent

    if args.logdir is not None:
        raise ConfigError("--logdir cannot be combined with --resume (the run keeps its folder)")
    if args.steps is not None and args.steps <= 0:
        raise ConfigError(f"--steps must be positive, got {args.steps}")
    record = rundir.read_config(args.resume)
    for given, stored, what in (
        (args.algo, record["algo"], "algorithm"),
        (args.env_id, record["env_id"], "env id"),
    ):
        if given is not None and given.lower() != str(stored).lower():
            raise ConfigError(f"{args.resume} was trained with {what} {stored}, not {given}")
    layers = override_layers(argparse.Namespace(**{**vars(args), "steps": None}))
    overrides = {k: v for layer in layers for k, v in layer.items()}
    return Agent.load(args.resume, overrides=overrides or None)


def _report_training(agent) -> None:
    run_dir = agent.run_dir
    print(f"steps trained: {int(agent.global_step.numpy()):,}")
    if run_dir is not None:
        print(f"run folder: {run_dir}")
    ev = getattr(agent, "last_eval", None)
    if ev:
        print(
            f"final evaluation: mean return {ev['mean_reward']:.2f} ± {ev['std_reward']:.2f} "
            f"over {_plural(ev['episodes'], 'episode')} (mean length {ev['mean_ep_length']:.1f})"
        )
    if run_dir is not None:
        print(f"tensorboard --logdir {shlex.quote(str(Path(run_dir).parent))}")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' * (n != 1)}"


def _check_display() -> None:
    display_vars = ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER")
    if sys.platform.startswith(("linux", "freebsd")) and not any(map(os.environ.get, display_vars)):
        raise RLSeverError(
            "--render needs a display, and none is available (DISPLAY and "
            "WAYLAND_DISPLAY are unset); run without --render, or set "
            "SDL_VIDEODRIVER=dummy to render off-screen"
        )


def _cmd_eval(args: argparse.Namespace) -> int:
    from rl_sever.core.agent import Agent
    from rl_sever.core.evaluation import evaluate

    if args.episodes <= 0:
        raise ConfigError(f"--episodes must be positive, got {args.episodes}")
    if args.render and args.video:
        raise ConfigError("--render and --video exclude each other (a video renders off-screen)")
    if args.render:
        _check_display()
    agent = Agent.load(args.run_dir)
    seed = args.seed if args.seed is not None else agent.config.seed + 10_000
    try:
        render = {"render_mode": "human", "max_envs": 1} if args.render else {}
        result = evaluate(agent, args.episodes, seed=seed, video_dir=args.video, **render)
    except Exception as e:
        # Window-system failures surface from pygame/glfw deep inside the env's render().
        where = type(e).__module__
        # (--video renders in envs.replay's own process, which reports its failures itself.)
        if args.render and (
            where.split(".")[0] in ("pygame", "glfw", "mujoco") or where == "gymnasium.error"
        ):
            raise RLSeverError(f"rendering failed: {e}") from None
        raise
    finally:
        agent.close()
    print(
        f"{agent.algo} on {agent.env_id}, step {int(agent.global_step.numpy()):,}, "
        f"{_plural(result['episodes'], 'episode')} (seed {seed})"
    )
    print(f"mean return: {result['mean_reward']:.2f} ± {result['std_reward']:.2f}")
    print(f"mean length: {result['mean_ep_length']:.1f}")
    if args.video:
        print(f"videos: {_plural(len(result['videos']), 'file')} in {args.video}")
        for path in result["videos"]:
            print(f"  {path}")
        if not result["replay_matches"]:
            print("warning: replaying the actions gave other returns "
                  f"({', '.join(f'{r:.2f}' for r in result['returns'])}): the env is not "
                  "deterministic given its seed and actions, so the videos show other episodes "
                  "than the ones evaluated", file=sys.stderr)
    return 0


def _cmd_plot(args: argparse.Namespace) -> int:
    from rl_sever.core.curves import plot_curves

    out, _ = plot_curves(args.run_dirs, args.out, metric=args.metric, per_run=args.per_run,
                      smoothing=args.smooth, title=args.title)
    print(f"wrote {out}: {args.metric} of {_plural(len(args.run_dirs), 'run')} "
          f"against environment steps")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from rl_sever.core.agent import Agent
    from rl_sever.core.export import METADATA_FILE, SIGNATURE, export_policy

    agent = Agent.load(args.run_dir)
    try:
        out = export_policy(agent, args.out_dir)
    finally:
        agent.close()
    step = int(agent.global_step.numpy())
    print(f"exported the greedy {agent.algo} policy for {agent.env_id} (step {step:,}) to {out}")
    print(f"metadata: {out / METADATA_FILE}")
    print(f"use: tf.saved_model.load({str(out)!r}).signatures[{SIGNATURE!r}](observation=obs)")
    return 0


def _cmd_audit(args: argparse.Namespace) -> int:
    from rl_sever.audit import format_verdict, run_audit

    klass, cfg, _ = build_config(args.algo, args.env_id, args)
    agent = klass(args.env_id, cfg, logdir=None)
    try:
        batch, steps = None, 0
        while batch is None:  # off-policy agents return no batch until they may learn
            collected = agent.collector.collect()
            batch, steps = collected.batch, steps + collected.steps
            agent.global_step.assign_add(collected.steps)
            if batch is None and steps > 10_000_000:
                raise ConfigError("the agent produced no training batch within 10M steps")
        matrix, violations = run_audit(agent, batch, enforce=False)
    finally:
        agent.close()
    print(f"gradient-flow audit: {agent.algo} on {agent.env_id} ({steps:,} env steps collected)\n")
    print(matrix.to_table(violations))
    print()
    print(format_verdict(violations))
    return EXIT_VIOLATION if violations else 0


def _cmd_list(_: argparse.Namespace) -> int:
    print("algorithms: " + ", ".join(algorithm_names()))
    print("presets (ALGO ENV_ID):")
    for algo, env_id in presets.available():
        print(f"  {algo:<6} {env_id}")
    return 0


# -- parser -----------------------------------------------------------------------------------
def _add_overrides(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE.yaml",
                   help="YAML file of config values (over the preset)")
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        default=[],
        help="override one config key, e.g. --set n_steps=128 --set network.hidden_sizes=[32,32]",
    )
    p.add_argument(
        "--loss",
        action="append",
        metavar="SPEC",
        default=[],
        help="edit the objective (repeatable, after config key losses): -NAME removes a term, "
        "+PKG.MOD:ATTR[@W] adds one, NAME=PKG.MOD:ATTR[@W] replaces one, NAME@W reweights one",
    )
    p.add_argument("--seed", type=int, help="random seed (config key seed)")
    p.add_argument("--no-preset", action="store_true", help="ignore rl_sever's tuned preset")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rl-sever",
        description="Train, evaluate, export and audit actor-critic agents on "
        "Gymnasium environments.",
        epilog="Details: rl-sever COMMAND --help; config keys: rl-sever config ALGO.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    algos = ", ".join(algorithm_names())

    p = sub.add_parser(
        "train",
        help="train an agent (or resume a run)",
        description="Train ALGO on ENV_ID. Config precedence: defaults < preset < "
        "--config < --set < --seed/--n-envs/--steps.",
    )
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
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("eval", help="evaluate a trained run's greedy policy")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--episodes", type=int, default=10, help="episodes to run (default 10)")
    p.add_argument("--render", action="store_true", help="show the episodes in a window")
    p.add_argument("--video", metavar="DIR",
                   help="record each episode as an MP4 file in DIR (the video extra)")
    p.add_argument("--seed", type=int,
                   help="env seed (default: the run's seed + 10000, as in training)")
    p.set_defaults(func=_cmd_eval)

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
    p.set_defaults(func=_cmd_plot)

    p = sub.add_parser("export", help="write the greedy policy as a TensorFlow SavedModel")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("out_dir", metavar="OUT_DIR")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser(
        "audit",
        help="print the gradient-flow matrix and contract verdict",
        description="Build ALGO on ENV_ID, collect one batch and audit every loss "
        "against the agent's flow contract. Exit 0 if it holds, 1 on a violation.",
    )
    p.add_argument("algo", metavar="ALGO", help=f"algorithm: {algos}")
    p.add_argument("env_id", metavar="ENV_ID")
    _add_overrides(p)
    p.set_defaults(func=_cmd_audit)

    p = sub.add_parser("list", help="list algorithms and presets")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("config", help="list every config key of ALGO with its default and help")
    p.add_argument("algo", metavar="ALGO", help=f"algorithm: {algos}")
    p.add_argument("env_id", nargs="?", metavar="ENV_ID", help="show values with this env's preset")
    _add_overrides(p)
    p.set_defaults(func=lambda a: _print_config_help(a.algo, a.env_id, a))
    return parser


def _join_loss_values(argv: list[str]) -> list[str]:
    """`--loss -entropy` -> `--loss=-entropy`: argparse would take `-entropy` for an option."""
    out, i = [], 0
    while i < len(argv):
        if argv[i] == "--loss" and i + 1 < len(argv):
            out.append(f"--loss={argv[i + 1]}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `rl-sever`; returns the process exit code."""
    argv = _join_loss_values(list(sys.argv[1:] if argv is None else argv))
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help or a usage error: argparse has printed it already
        return int(e.code or 0) if not isinstance(e.code, str) else 2
    # Warnings reach a CLI user as one line each (e.g. a checkpoint fallback).
    warnings.formatwarning = lambda message, *_, **__: f"warning: {message}\n"
    if args.func is not _cmd_list:  # `list` never needs TensorFlow
        from rl_sever.core.quiet import import_tensorflow_quietly

        import_tensorflow_quietly()
    try:
        return args.func(args)
    except RLSeverError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        # The training loop has saved a checkpoint and printed how to resume.
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
