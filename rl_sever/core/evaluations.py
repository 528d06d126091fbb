"""Evaluation during training: when to evaluate, the records kept, the best policy, stopping.

Every `eval_every` env steps (and at the end of the run) the greedy policy plays
`eval_episodes` episodes on fresh envs seeded `seed + 10000` (the same episodes' seeds at every
evaluation, so evaluations compare policies, not luck), logged as `eval/mean_reward` and
`eval/mean_ep_length`. The records go to `<run>/evaluations.json`; a policy that beats every
earlier evaluation is written to `<run>/best/`, a run folder of its own holding one checkpoint
(`rl-sever eval RUN/best`, `rl-sever export RUN/best ...`, `Agent.load(RUN / "best")`). On
resume, records past the restored step are dropped (a crash lost those steps); best/ keeps the
best policy ever evaluated, and its return stays the bar to beat.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

from rl_sever.core import rundir
from rl_sever.core.callbacks import StopTrainingOnNoModelImprovement, StopTrainingOnRewardThreshold
from rl_sever.core.checkpoint import Checkpointer
from rl_sever.core.disk import WRITE_ERRORS, CheckpointWriteWarning, is_write_error, reason
from rl_sever.core.evaluation import evaluate

EVALUATIONS_FILE = "evaluations.json"
BEST_DIR = "best"
BEST_FILE = "best.json"  # in best/: {step, mean_reward, run}


class Evaluations:
    """The evaluations of one run (`records`), made by `run(step, logger)`."""

    def __init__(self, agent, run_dir: Path | None, start_step: int):
        self.agent, self.run_dir, cfg = agent, run_dir, agent.config
        self.every, self.episodes = cfg.eval_every, cfg.eval_episodes
        if run_dir is not None:
            _recover_best(run_dir)
            stored = read_records(run_dir)
            self.records = [r for r in stored if r["step"] <= start_step]
            if len(self.records) < len(stored):  # a crash lost those steps: so are these
                self._write_records()
        else:
            self.records = []
        best = read_best(run_dir / BEST_DIR) if run_dir is not None else None
        values = [r["mean_reward"] for r in self.records]
        if best is not None:
            values.append(best["mean_reward"])
        self.best = max(values) if values else None
        self.next = next_multiple(start_step, self.every)
        self.rules = []
        if cfg.stop_reward is not None:
            self.rules.append(StopTrainingOnRewardThreshold(cfg.stop_reward))
        if cfg.stop_patience:  # the N-th evaluation in a row without a new best stops
            self.rules.append(StopTrainingOnNoModelImprovement(cfg.stop_patience - 1,
                                                               cfg.stop_min_evals))
        agent.evaluations = self.records
        agent.evaluations_at_start = len(self.records)
        # One process evaluates: the chief (a multi-worker run's other workers have no run_dir
        # and do not evaluate; its variables are not saved as best/ outside the collective save).
        self.chief = agent.replicas.is_chief
        self.keep_best = agent.config.distribute != "multiworker"

    @property
    def enabled(self) -> bool:
        return self.chief and self.episodes > 0 and self.agent.env_id != "custom"

    def due(self, step: int) -> bool:
        return self.enabled and bool(self.next) and step >= self.next

    def run(self, step: int, logger, *, final: bool = False) -> str | None:
        """Evaluate now, log, keep the best; the reason to stop, if a stopping rule says so."""
        self.next = next_multiple(step, self.every)
        cfg = self.agent.config
        result = evaluate(self.agent, self.episodes, seed=cfg.seed + 10_000)
        self.agent.last_eval = result
        record = {"step": int(step), **{k: result[k] for k in (
            "mean_reward", "std_reward", "mean_ep_length", "episodes")}}
        if "success_rate" in result:
            record["success_rate"] = result["success_rate"]
        self.records.append(record)
        improved = self.best is None or record["mean_reward"] > self.best
        if improved:
            self.best = record["mean_reward"]
        if self.run_dir is not None:
            self._write_records()
            if improved and self.keep_best:
                self._save_best(record)
        logger.record_many({"mean_reward": record["mean_reward"],
                            "mean_ep_length": record["mean_ep_length"],
                            "best_mean_reward": self.best}, prefix="eval/")
        for rule in [] if final else self.rules:  # the run ends anyway
            if rule(self.agent, None) is False:
                logger.text("stop", f"stopped at step {step:,}: {rule.reason}", step)
                return rule.reason
        return None

    def final(self, step: int, logger) -> None:
        """The end-of-run evaluation, unless one was just made at this step."""
        if self.enabled and (not self.records or self.records[-1]["step"] != step):
            self.run(step, logger, final=True)
            logger.dump(step)

    def _write_records(self) -> None:
        path = self.run_dir / EVALUATIONS_FILE
        try:
            rundir.write_json(path, self.records, indent=1)
        except WRITE_ERRORS as e:
            if not is_write_error(e):
                raise
            warnings.warn(f"could not write {path} ({reason(e)})", CheckpointWriteWarning,
                          stacklevel=3)

    def _save_best(self, record: dict) -> None:
        """Write the agent's checkpoint as `<run>/best/`, replacing the previous best whole."""
        agent, target = self.agent, self.run_dir / BEST_DIR
        staging = self.run_dir / (BEST_DIR + ".tmp")
        try:
            shutil.rmtree(staging, ignore_errors=True)
            (staging / "checkpoints").mkdir(parents=True)
            entry = agent.config_record()
            # best/ holds no replay buffer: its agent starts without one, and says nothing of it.
            if "save_replay" in entry["config"]:
                entry["config"]["save_replay"] = False
            rundir.write_config(staging, entry)
            (staging / BEST_FILE).write_text(json.dumps(
                {"step": record["step"], "mean_reward": record["mean_reward"],
                 "run": str(self.run_dir.name)}))
            if agent.normalizer is not None:
                agent.normalizer.before_save()
            Checkpointer(agent.checkpoint, staging, max_to_keep=1).save(record["step"])
            old = self.run_dir / (BEST_DIR + ".old")
            shutil.rmtree(old, ignore_errors=True)
            if target.exists():
                target.rename(old)
            staging.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        except WRITE_ERRORS as e:
            if not is_write_error(e):
                raise
            shutil.rmtree(staging, ignore_errors=True)
            warnings.warn(f"the best policy (step {record['step']:,}) could not be written to "
                          f"{target} ({reason(e)}); training goes on", CheckpointWriteWarning,
                          stacklevel=3)


def _recover_best(run_dir: Path) -> None:
    """A crash between the two renames of `_save_best` leaves only best.old: put it back."""
    best, old = run_dir / BEST_DIR, run_dir / (BEST_DIR + ".old")
    if old.is_dir() and not best.exists():
        old.rename(best)


def read_records(run_dir: Path, up_to: int | None = None) -> list[dict]:
    """The run's evaluation records (those at or before step `up_to`)."""
    path = Path(run_dir) / EVALUATIONS_FILE
    try:
        records = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    return [r for r in records if up_to is None or r["step"] <= up_to]


def read_best(best_dir: Path) -> dict | None:
    """best/best.json: {step, mean_reward, run}, or None (not a best-policy folder)."""
    try:
        return json.loads((Path(best_dir) / BEST_FILE).read_text())
    except (OSError, ValueError):
        return None


def next_multiple(step: int, every: int) -> int:
    """The first multiple of `every` after `step` (0: never)."""
    return (step // every + 1) * every if every else 0
