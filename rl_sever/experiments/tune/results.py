"""What a tune leaves: best.yaml (the best trial's values, a config file `rl-sever train
--config` takes) and report.md (trials by state, the best trials, each hyperparameter's
importance by Optuna's fANOVA evaluator)."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import yaml
from optuna.trial import TrialState

from rl_sever.experiments.tune.space import decode, nested

TOP = 10


def counts(study: optuna.Study) -> dict[str, int]:
    out = {state.name.lower(): 0 for state in TrialState}
    for t in study.get_trials(deepcopy=False):
        out[t.state.name.lower()] += 1
    return out


def complete(study: optuna.Study) -> list:
    return sorted((t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                   if t.value is not None and math.isfinite(t.value)),
                  key=lambda t: -t.value)


def importances(study: optuna.Study) -> dict[str, float]:
    """fANOVA importance of each hyperparameter over the completed trials ({} when too few)."""
    if len(complete(study)) < 2:
        return {}
    try:
        return optuna.importance.get_param_importances(study)
    except (RuntimeError, ValueError):  # e.g. every trial with the same values
        return {}


def write_best(folder: Path, record: dict, study: optuna.Study) -> Path | None:
    trials = complete(study)
    if not trials:
        return None
    best = trials[0]
    values = {**record["user"], **best.user_attrs.get("values",
                                                      decode(best.params, record["space"]))}
    path = folder / "best.yaml"
    header = (f"# {record['algo']} on {record['env_id']}: the best of {len(trials)} completed "
              f"trials of `rl-sever tune` ({folder.name}), trial {best.number}, mean eval return "
              f"{best.value:.2f} after {record['budget']:,} env steps (seed {record['seed']}).\n"
              f"# Over the {'preset' if record.get('preset') else 'defaults'}; use: "
              f"{train_command(record, path)}\n")
    path.write_text(header + yaml.safe_dump(nested(values), sort_keys=True))
    return path


def train_command(record: dict, best: Path) -> str:
    """The `rl-sever train` command that trains the best configuration as the tune did (a tune
    without the preset: --no-preset too)."""
    no_preset = "" if record.get("preset", True) else " --no-preset"
    return f"rl-sever train {record['algo']} {record['env_id']} --config {best}{no_preset}"


def write_report(folder: Path, record: dict, study: optuna.Study, wall_s: float) -> Path:
    n = counts(study)
    trials = complete(study)
    lines = [f"# Tune of {record['algo']} on {record['env_id']}", "",
             f"{n['complete']} trials completed, {n['pruned']} pruned, {n['fail']} failed "
             f"(budget {record['budget']:,} env steps per trial, {record['evals']} evaluations of "
             f"{record['eval_episodes']} episodes, pruner {record['pruner']}, wall time of this "
             f"invocation {wall_s / 60:.1f} min).", ""]
    if trials:
        keys = list(trials[0].params)
        lines += ["| trial | mean eval return | " + " | ".join(keys) + " |",
                  "|" + "---|" * (len(keys) + 2)]
        for t in trials[:TOP]:
            cells = [_fmt(t.params.get(k)) for k in keys]
            lines.append(f"| {t.number} | {t.value:.2f} | " + " | ".join(cells) + " |")
        lines.append("")
    weights = importances(study)
    if weights:
        lines += ["Importance of each hyperparameter (fANOVA over the completed trials):", "",
                  "| hyperparameter | importance |", "|---|---|"]
        lines += [f"| {k} | {v:.3f} |" for k, v in weights.items()]
    path = folder / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)
