"""Stopping rules on the evaluations made during training, as `learn(callback=...)` takes them.

A callback is called after every iteration as `callback(agent, metrics)` (metrics: the last
logged scalars) and stops training by returning False; `learn(callback=[a, b])` calls each in
turn. The two rules here read `agent.evaluations`, the run's evaluation records (one dict per
evaluation: step, mean_reward, std_reward, mean_ep_length, episodes), which the training loop
appends to every `eval_every` env steps. They are SB3's EvalCallback companions under the same
names, and the config keys `stop_reward`, `stop_patience` and `stop_min_evals` are these rules.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class StopTrainingOnRewardThreshold:
    """Stop once an evaluation's mean return reaches `reward_threshold` (checked once per new
    evaluation)."""

    def __init__(self, reward_threshold: float):
        self.reward_threshold = float(reward_threshold)
        self.reason: str | None = None
        self._seen = None

    def __call__(self, agent, metrics: dict | None = None) -> bool:
        records = getattr(agent, "evaluations", None) or []
        new = _new_evaluation(self, agent, records)
        if new and records[-1]["mean_reward"] >= self.reward_threshold:
            last = records[-1]
            self.reason = (f"evaluation at step {last['step']:,} returned "
                           f"{last['mean_reward']:.2f}, reaching stop_reward "
                           f"{self.reward_threshold:g}")
            return False
        return True


class StopTrainingOnNoModelImprovement:
    """SB3's rule: once more than `min_evals` evaluations were made, count the evaluations in a
    row that do not beat the best mean return before them; stop when that count exceeds
    `max_no_improvement_evals` (config `stop_patience: N` is this rule with N - 1: stop at the
    N-th evaluation in a row without improvement)."""

    def __init__(self, max_no_improvement_evals: int, min_evals: int = 0):
        if max_no_improvement_evals < 0:
            raise ValueError("max_no_improvement_evals must be >= 0")
        self.max_no_improvement_evals, self.min_evals = int(max_no_improvement_evals), int(min_evals)
        self.reason: str | None = None
        self._seen = None

    def __call__(self, agent, metrics: dict | None = None) -> bool:
        records = getattr(agent, "evaluations", None) or []
        if not _new_evaluation(self, agent, records):
            return True
        count = evaluations_without_improvement(records, self.min_evals)
        if count > self.max_no_improvement_evals:
            best = max(r["mean_reward"] for r in records)
            self.reason = (f"{count} evaluations in a row without beating the best mean "
                           f"return ({best:.2f})")
            return False
        return True


def _new_evaluation(rule, agent, records: list[dict]) -> bool:
    """Whether `records` gained an evaluation since the rule last looked, made in this learn()
    call (a rule acts once per evaluation, never on one from an earlier call)."""
    key = (len(records), records[-1]["step"]) if records else None
    seen, rule._seen = rule._seen, key
    made_now = len(records) > getattr(agent, "evaluations_at_start", 0)
    return key is not None and key != seen and made_now


def evaluations_without_improvement(records: list[dict], min_evals: int = 0) -> int:
    """SB3's count: over the evaluations after the first `min_evals`, how many in a row (up to
    the last) did not beat the best mean return before them."""
    count, best = 0, float("-inf")
    for i, record in enumerate(records, 1):
        before, best = best, max(best, record["mean_reward"])
        if i > min_evals:
            count = 0 if best > before else count + 1
    return count


class CallbackList:
    """Call several callbacks in turn; training stops when one returns False (the others are
    still called that iteration). `reason`: the first stopping callback's."""

    def __init__(self, callbacks: list[Callable[[Any, dict], Any]]):
        self.callbacks = list(callbacks)
        self.reason: str | None = None

    def __call__(self, agent, metrics: dict | None = None) -> bool:
        results = [callback(agent, metrics) for callback in self.callbacks]
        stopped = [c for c, result in zip(self.callbacks, results) if result is False]
        if stopped:
            self.reason = getattr(stopped[0], "reason", None) or type(stopped[0]).__name__
            return False
        return True


def as_callback(callback):
    """A callable of (agent, metrics), from None, one callable or a list of them."""
    if callback is None or callable(callback):
        return callback
    if isinstance(callback, (list, tuple)):
        return CallbackList(callback)
    raise TypeError(f"callback must be a callable or a list of them, got {type(callback).__name__}")
