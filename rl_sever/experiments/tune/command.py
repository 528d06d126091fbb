"""`rl-sever tune ALGO ENV_ID` and `rl-sever tune --resume DIR` (rl_sever.cli parses them)."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from rl_sever.config import presets
from rl_sever.config.fields import flat_items
from rl_sever.config.resolve import _find_preset, override_layers
from rl_sever.core.registry import get_agent_class
from rl_sever.errors import ConfigError, RLSeverError
from rl_sever.experiments.tune import results
from rl_sever.experiments.tune.space import first_values, fit_to_rollout, load_space
from rl_sever.experiments.tune.study import (
    JOURNAL_FILE,
    load_study,
    new_folder,
    read_settings,
    record_of,
    start,
    write_settings,
)
from rl_sever.experiments.tune.trial import TuneSettings


def _check(args: argparse.Namespace) -> None:
    for name in ("trials", "budget", "evals", "eval_episodes", "jobs"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {value}")
    if args.timeout is not None and args.timeout <= 0:
        raise ConfigError(f"--timeout must be positive (minutes), got {args.timeout}")


def run_tune(args: argparse.Namespace) -> int:
    _check(args)
    jobs = args.jobs
    if args.resume:
        if args.algo or args.env_id:
            raise ConfigError("tune --resume DIR takes no ALGO or ENV_ID (the folder has them)")
        fixed = [flag for flag, given in (
            ("--budget", args.budget), ("--evals", args.evals), ("--space", args.space),
            ("--eval-episodes", args.eval_episodes), ("--config", args.config),
            ("--set", args.set), ("--loss", args.loss), ("--seed", args.seed),
            ("--n-envs", args.n_envs), ("--no-preset", args.no_preset),
            ("--logdir", args.logdir), ("--pruner", args.pruner != "median")) if given]
        if fixed:
            raise ConfigError(f"{', '.join(fixed)} cannot change when a tune resumes (its trials "
                              "must stay comparable); --trials, --timeout and --jobs can")
        folder = Path(args.resume)
        record = read_settings(folder)
        if args.trials:
            record["trials"] = args.trials
        jobs = jobs or record.get("jobs", 1)
        record["jobs"] = jobs
        record["threads"] = max(1, (os.cpu_count() or 1) // jobs)
        write_settings(folder, record)  # the other workers read it
        resume = True
    else:
        if not args.algo or not args.env_id:
            raise ConfigError("tune needs ALGO and ENV_ID (or --resume DIR)")
        klass = get_agent_class(args.algo)
        preset = None if args.no_preset else _find_preset(klass.algo, args.env_id)
        user, defaults = {}, klass.config_cls()
        for layer in override_layers(args):
            user.update(presets.flatten_layer(defaults, layer))
        base = {**presets.flatten_layer(defaults, preset or {}), **user}
        space = load_space(klass.algo, klass.config_cls(), args.space)
        # A bad setting fails here, once (with the space's first values: the base alone may
        # hold a batch size only the sampled rollout lengths fit).
        config = presets.resolve(klass.config_cls, [
            base, fit_to_rollout(first_values(space), base, klass.config_cls())])
        budget = args.budget or config.total_steps
        evals = args.evals or 5
        if evals > budget:
            raise ConfigError(f"--evals ({evals}) cannot exceed --budget ({budget:,} env steps)")
        cores, jobs = os.cpu_count() or 1, jobs or 1
        folder = new_folder(args.logdir or "runs", args.env_id, klass.algo)
        settings = TuneSettings(
            algo=klass.algo, env_id=args.env_id, base=base, space=space, budget=budget,
            evals=evals, eval_episodes=args.eval_episodes or 5, trials=args.trials or 50,
            seed=config.seed, threads=max(1, cores // jobs), deadline=None, folder=folder)
        typed = dict(flat_items(config))  # --set's strings as the config reads them
        user = {k: typed.get(k, v) for k, v in user.items() if k not in ("seed", "total_steps")}
        record = record_of(settings, user=user, pruner=args.pruner, jobs=jobs,
                           timeout_min=args.timeout, startup_trials=min(10, settings.trials))
        record["preset"] = preset is not None
        resume = False
    what = "resuming" if resume else "tuning"
    limit = f", at most {args.timeout:g} min" if args.timeout else ""
    print(f"{what} {record['algo']} on {record['env_id']}: {record['trials']} trials of "
          f"{record['budget']:,} env steps, {jobs} at a time{limit}, in {folder}", flush=True)
    t0 = time.perf_counter()
    try:
        study = start(record, folder, jobs=jobs, timeout_min=args.timeout, resume=resume,
                      log=lambda line: print(line, flush=True))
    except (KeyboardInterrupt, RLSeverError):
        _results(folder, record, time.perf_counter() - t0)  # what finished so far
        print(f"resume with: rl-sever tune --resume {folder}", flush=True)
        raise
    _results(folder, record, time.perf_counter() - t0, study)
    return 0


def _results(folder: Path, record: dict, wall: float, study=None) -> None:
    if study is None:
        try:
            study = load_study(folder, record, 0)
        except Exception:  # nothing was stored yet
            return
    report = results.write_report(folder, record, study, wall)
    best = results.write_best(folder, record, study)
    n = results.counts(study)
    print(f"\n{n['complete']} trials completed, {n['pruned']} pruned, {n['fail']} failed in "
          f"{wall / 60:.1f} min")
    top = results.complete(study)
    if top:
        print(f"best: trial {top[0].number}, mean eval return {top[0].value:.2f}")
        print(f"best configuration: {best}\n  train it: {results.train_command(record, best)}")
    print(f"report: {report}\ndashboard: optuna-dashboard {folder / JOURNAL_FILE}")
