"""One trial of `rl-sever tune`, and the loop a worker runs trials in.

A trial trains ALGO on ENV for the tune's budget with the sampled values over the base config
(preset, --config, --set), evaluating `evals` times on the way (config eval_every); each
evaluation is reported to Optuna, whose pruner may stop the trial there. The trial's value is
its last evaluation's mean return. Its run folder is `<tune>/trials/trial-NNNN/` (TensorBoard
events, evaluations.json, best/, the final checkpoint). A setting the config refuses, or a run
that diverges (a non-finite loss), prunes the trial with the reason in its user attributes, as
the zoo's tuner does. A worker runs trials one after another in its process, so TensorFlow
starts once per worker, not once per trial.
"""

from __future__ import annotations

import gc
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import tensorflow as tf
from optuna.trial import TrialState

from rl_sever.config import presets
from rl_sever.core.evaluations import read_records
from rl_sever.core.registry import get_agent_class
from rl_sever.errors import CheckpointError, RLSeverError, WriteError
from rl_sever.experiments.tune.space import fit_to_rollout, sample

COUNTED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
MAX_FAILURES_IN_A_ROW = 3
"""A worker whose trials fail this many times in a row stops the tune: the cause is not the
sampled values (those prune the trial) but the set-up, and every trial would meet it."""


class TuneFailed(RLSeverError):
    """Trials keep failing for a reason the sampled values do not explain."""


@dataclass
class TuneSettings:
    algo: str
    env_id: str
    base: dict
    """Config values under every trial (preset, --config, --set), nested."""
    space: dict
    budget: int
    evals: int
    eval_episodes: int
    trials: int
    seed: int
    threads: int
    deadline: float | None
    """time.time() after which no trial starts."""
    folder: Path

    def trial_layer(self) -> dict[str, Any]:
        return {"total_steps": self.budget, "seed": self.seed,
                "eval_every": max(1, self.budget // self.evals),
                "eval_episodes": self.eval_episodes, "checkpoint_every": 0,
                "checkpoint_minutes": 0, "progress_seconds": 0,
                **({"intra_op_threads": self.threads} if "intra_op_threads" not in self.base
                   else {})}


def run_trial(trial: optuna.Trial, settings: TuneSettings) -> float:
    """Train one sampled configuration; its last evaluation's mean return."""
    klass = get_agent_class(settings.algo)
    values = sample(trial, settings.space)
    defaults = klass.config_cls()
    # Trials are never resumed: no replay buffer written beside their final checkpoint.
    quiet = {"save_replay": False} if hasattr(defaults, "save_replay") else {}
    try:
        values = fit_to_rollout(values, settings.base, defaults)
        config = presets.resolve(klass.config_cls,
                                 [settings.base, values, settings.trial_layer(), quiet])
    except RLSeverError as e:
        trial.set_user_attr("invalid", str(e))
        raise optuna.TrialPruned(f"invalid configuration: {e}") from None
    trial.set_user_attr("values", values)  # what the trial trained with (best.yaml's)
    run_dir = settings.folder / "trials" / f"trial-{trial.number:04d}"
    trial.set_user_attr("run_dir", str(run_dir.relative_to(settings.folder)))
    every = config.eval_every
    reported = {"n": 0, "pruned": False}

    def report(agent, metrics) -> bool:
        records = getattr(agent, "evaluations", None) or []
        if len(records) == reported["n"]:
            return True  # the pruner looks once per evaluation
        for i in range(reported["n"], len(records)):
            # At the scheduled step (the k-th evaluation's k * eval_every), not the step the
            # rollout ended at, which the sampled n_steps moves: the median pruner compares
            # trials at equal steps.
            trial.report(records[i]["mean_reward"], (i + 1) * every)
        reported["n"] = len(records)
        # At the budget's end the trial is complete: its value stands, whatever the pruner says.
        if records[-1]["step"] < settings.budget and trial.should_prune():
            reported["pruned"] = True
            return False
        return True

    tf.get_logger().setLevel(logging.ERROR)  # each trial's new agent would warn of retracing
    agent = None
    try:
        agent = klass(settings.env_id, config, run_dir=run_dir)
        agent.learn(progress=False, callback=report)
    except (WriteError, CheckpointError):
        raise  # the disk, not the values: a failed trial
    except RLSeverError as e:  # values the agent refuses, a non-finite loss or gradient
        trial.set_user_attr("error", str(e))
        raise optuna.TrialPruned(f"the run failed: {e}") from None
    finally:  # (keras.backend.clear_session would reset TensorFlow's context: not wanted)
        if agent is not None:
            agent.close()
        del agent
        gc.collect()
    records = read_records(run_dir)
    trial.set_user_attr("steps", records[-1]["step"] if records else 0)
    if reported["pruned"]:
        raise optuna.TrialPruned(f"pruned at step {records[-1]['step']:,}")
    if not records:
        raise optuna.TrialPruned("no evaluation was made")
    return float(records[-1]["mean_reward"])


def work(study: optuna.Study, settings: TuneSettings, log=print) -> int:
    """Ask, run and tell trials until the study holds `settings.trials` finished or running
    ones, or the deadline passed; returns the trials this worker ran."""
    ran, failures = 0, 0
    while True:
        if settings.deadline is not None and time.time() >= settings.deadline:
            break
        counted = study.get_trials(deepcopy=False, states=COUNTED)
        waiting = [t for t in counted if t.state == TrialState.WAITING]
        if len(counted) - len(waiting) >= settings.trials:
            break
        trial = study.ask()
        start = time.perf_counter()
        try:
            value = run_trial(trial, settings)
        except optuna.TrialPruned as e:
            study.tell(trial, state=TrialState.PRUNED)
            failures = 0
            log(f"trial {trial.number}: pruned ({e}) after {time.perf_counter() - start:.0f} s")
        except KeyboardInterrupt:
            trial.set_user_attr("interrupted", True)
            study.tell(trial, state=TrialState.FAIL)
            raise
        except Exception as e:  # a bug or an env error: recorded, and the tune goes on
            trial.set_user_attr("error", f"{type(e).__name__}: {e}")
            study.tell(trial, state=TrialState.FAIL)
            log(f"trial {trial.number}: failed ({type(e).__name__}: {e})")
            failures += 1
            if failures >= MAX_FAILURES_IN_A_ROW:
                raise TuneFailed(f"{failures} trials in a row failed, the last with "
                                 f"{type(e).__name__}: {e}") from None
        else:
            failures = 0
            study.tell(trial, value)
            best = study.best_value if _has_complete(study) else value
            log(f"trial {trial.number}: {value:.2f} in {time.perf_counter() - start:.0f} s "
                f"(best so far {best:.2f})")
        ran += 1
    return ran


def _has_complete(study: optuna.Study) -> bool:
    return bool(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
