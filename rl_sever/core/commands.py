"""The commands of `rl-sever` (train, eval, plot, export, audit, list, config), called by
rl_sever.cli once it has parsed the arguments and imported TensorFlow quietly.

User mistakes raise RLSeverError (rl_sever.cli prints them as one line, exit code 2).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from contextlib import closing
from pathlib import Path

from rl_sever.audit import format_verdict
from rl_sever.config import presets
from rl_sever.config.fields import describe_config, update
from rl_sever.config.resolve import override_layers, resolve_config
from rl_sever.core.agent import Agent
from rl_sever.core.curves import plot_curves
from rl_sever.core.evaluation import evaluate
from rl_sever.core.export import METADATA_FILE, SIGNATURE
from rl_sever.core.registry import algorithm_names, get_agent_class
from rl_sever.core.runs import audit_first_batch, check_resume, resume
from rl_sever.deploy import export as export_formats
from rl_sever.deploy.table import format_export
from rl_sever.errors import ConfigError, RLSeverError

EXIT_VIOLATION = 1


def build_config(algo: str, env_id: str | None, args: argparse.Namespace):
    """(agent class, resolved config, whether a preset was applied) of ALGO on ENV_ID."""
    klass = get_agent_class(algo)
    return (klass, *resolve_config(klass, env_id, args))


def config(args: argparse.Namespace) -> int:
    klass, cfg, used_preset = build_config(args.algo, args.env_id, args)
    defaults = {k: v for k, v, _ in describe_config(klass.config_cls())}
    source = f" with the {klass.algo}/{args.env_id} preset" if used_preset else ""
    print(f"{klass.algo} config keys{source} (set with --set key=value or a --config YAML file):\n")
    for key, value, doc in describe_config(cfg):
        changed = "" if value == defaults.get(key) else f"   (default {defaults.get(key)!r})"
        print(f"  {key} = {value!r}{changed}\n      {doc}")
    return 0


def train(args: argparse.Namespace) -> int:
    if args.help_config:
        if not args.algo:
            raise ConfigError("--help-config needs ALGO (e.g. rl-sever train ppo --help-config)")
        return config(args)
    if args.resume:
        if args.logdir is not None:
            raise ConfigError("--logdir cannot be combined with --resume (the run keeps its folder)")
        layers = override_layers(argparse.Namespace(**{**vars(args), "steps": None}))
        overrides = {k: v for layer in layers for k, v in layer.items()}
        record = check_resume(args.resume, algo=args.algo, env_id=args.env_id, steps=args.steps)
        if record["config"].get("learners"):  # the learner processes resume it on Ray
            klass = get_agent_class(record["algo"])
            cfg = update(update(klass.config_cls(), record["config"]), overrides)
            return _train_learners(klass, record["env_id"], cfg, None, args.resume, args.steps,
                                   overrides or None)
        agent = resume(args.resume, algo=args.algo, env_id=args.env_id, steps=args.steps,
                       overrides=overrides)
    else:
        if not args.algo or not args.env_id:
            raise ConfigError("train needs ALGO and ENV_ID (or --resume RUN_DIR)")
        klass, cfg, used_preset = build_config(args.algo, args.env_id, args)
        if used_preset:
            print(f"using the {klass.algo}/{args.env_id} preset (tuned hyperparameters; "
                  "--no-preset to start from the defaults)")
        if cfg.learners:
            return _train_learners(klass, args.env_id, cfg, args.logdir or "runs")
        # Builds the env and networks: an invalid env id or space fails here, before any
        # run folder exists (the agent creates it lazily in learn()).
        agent = klass(args.env_id, cfg, logdir=args.logdir or "runs")
    with closing(agent):
        start, target = int(agent.global_step.numpy()), int(agent.target_steps.numpy())
        progress = False if args.no_progress else None
        if args.resume and args.steps is None and start >= target:
            print(f"{agent.run_dir} already reached its target of {target:,} steps; "
                  "pass --steps N to train N more")
            return 0
        if args.resume:
            print(f"resuming {agent.run_dir} at step {start:,} (target {target:,})")
            agent.continue_learning(progress=progress)
        else:
            agent.learn(progress=progress)
        _report_training(agent)
    return 0


def _train_learners(klass, env_id: str, cfg, logdir, run_dir=None, steps=None,
                    overrides=None) -> int:
    """Training (or resuming `run_dir`) on `cfg.learners` learner processes started by Ray."""
    if klass.train_learners is None:
        raise ConfigError(f"learners is not supported by {klass.algo}")
    results = klass.train_learners(klass, env_id, cfg, logdir, run_dir, steps, overrides)
    chief = results[0]
    same = len({r["weights"] for r in results}) == 1
    print(f"{len(results)} learner processes on Ray; weights identical on all: {same}")
    print(f"steps trained: {chief['steps']:,} (every worker's)")
    print(f"run folder: {chief['run_dir']}")
    ev = chief["last_eval"]
    if ev:
        print(f"final evaluation: mean return {ev['mean_reward']:.2f} ± {ev['std_reward']:.2f} "
              f"over {_plural(ev['episodes'], 'episode')}")
    print(f"tensorboard --logdir {shlex.quote(str(Path(chief['run_dir']).parent))}")
    return 0


def _report_training(agent) -> None:
    run_dir = agent.run_dir
    print(f"steps trained: {int(agent.global_step.numpy()):,}")
    if run_dir is not None:
        print(f"run folder: {run_dir}")
    if getattr(agent, "stop_reason", None):
        print(f"stopped early: {agent.stop_reason}")
    ev = getattr(agent, "last_eval", None)
    if ev:
        print(f"final evaluation: mean return {ev['mean_reward']:.2f} ± {ev['std_reward']:.2f} "
              f"over {_plural(ev['episodes'], 'episode')} (mean length {ev['mean_ep_length']:.1f})")
    records = getattr(agent, "evaluations", None) or []
    if len(records) > 1 and run_dir is not None:
        best = max(records, key=lambda r: r["mean_reward"])
        print(f"best evaluation: mean return {best['mean_reward']:.2f} at step "
              f"{best['step']:,}, kept in {Path(run_dir) / 'best'}")
    if run_dir is not None:
        print(f"tensorboard --logdir {shlex.quote(str(Path(run_dir).parent))}")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' * (n != 1)}"


def eval(args: argparse.Namespace) -> int:
    if args.episodes <= 0:
        raise ConfigError(f"--episodes must be positive, got {args.episodes}")
    if args.render and args.video:
        raise ConfigError("--render and --video exclude each other (a video renders off-screen)")
    display_vars = ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER")
    if (args.render and sys.platform.startswith(("linux", "freebsd"))
            and not any(map(os.environ.get, display_vars))):
        raise RLSeverError("--render needs a display, and none is available (DISPLAY and "
                           "WAYLAND_DISPLAY are unset); run without --render, or set "
                           "SDL_VIDEODRIVER=dummy to render off-screen")
    render = {"render_mode": "human", "max_envs": 1} if args.render else {}
    with closing(Agent.load(args.run_dir)) as agent:
        seed = args.seed if args.seed is not None else agent.config.seed + 10_000
        try:
            result = evaluate(agent, args.episodes, seed=seed, video_dir=args.video, **render)
        except Exception as e:
            # Window-system failures surface from pygame/glfw deep inside the env's render().
            where = type(e).__module__
            # (--video renders in envs.replay's own process, which reports its failures itself.)
            if args.render and (where.split(".")[0] in ("pygame", "glfw", "mujoco")
                                or where == "gymnasium.error"):
                raise RLSeverError(f"rendering failed: {e}") from None
            raise
    print(f"{agent.algo} on {agent.env_id}, step {int(agent.global_step.numpy()):,}, "
          f"{_plural(result['episodes'], 'episode')} (seed {seed})")
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


def plot(args: argparse.Namespace) -> int:
    out, _ = plot_curves(args.run_dirs, args.out, metric=args.metric, per_run=args.per_run,
                         smoothing=args.smooth, title=args.title, band=args.band)
    print(f"wrote {out}: {args.metric} of {_plural(len(args.run_dirs), 'run')} "
          f"against environment steps")
    return 0


def export(args: argparse.Namespace) -> int:
    with closing(Agent.load(args.run_dir)) as agent:
        report = export_formats(agent, args.out_dir, args.formats or "savedmodel",
                                check=args.check, quantize=args.quantize,
                                stochastic=args.stochastic)
    out = Path(report["out"])
    step = int(agent.global_step.numpy())
    print(f"exported the greedy {agent.algo} policy for {agent.env_id} (step {step:,}) to {out}")
    print(format_export(report["formats"]))
    print(f"metadata (inputs, outputs, preprocessing): {out / METADATA_FILE}")
    if "savedmodel" in report["formats"]:
        print(f"use: tf.saved_model.load({str(out)!r}).signatures[{SIGNATURE!r}](observation=obs)")
    return 0


def audit(args: argparse.Namespace) -> int:
    klass, cfg, _ = build_config(args.algo, args.env_id, args)
    with closing(klass(args.env_id, cfg, logdir=None)) as agent:
        matrix, violations, steps = audit_first_batch(agent)
    print(f"gradient-flow audit: {agent.algo} on {agent.env_id} ({steps:,} env steps collected)\n")
    print(f"{matrix.to_table(violations)}\n\n{format_verdict(violations)}")
    return EXIT_VIOLATION if violations else 0


def list(_: argparse.Namespace) -> int:
    print("algorithms: " + ", ".join(algorithm_names()))
    print("presets (ALGO ENV_ID):")
    for algo, env_id in presets.available():
        print(f"  {algo:<6} {env_id}")
    return 0
