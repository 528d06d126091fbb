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
    """Stop once an evaluation's mean return reaches `reward_threshold`."""

    def __init__(self, reward_threshold: float):
        self.reward_threshold = float(reward_threshold)
        self.reason: str | None = None

    def __call__(self, agent, metrics: dict | None = None) -> bool:
        records = getattr(agent, "evaluations", None) or []
        if records and records[-1]["mean_reward"] >= self.reward_threshold:
            last = records[-1]
            self.reason = (f"evaluation at step {last['step']:,} returned "
                           f"{last['mean_reward']:.2f}, reaching stop_reward "
                           f"{self.reward_threshold:g}")
            return False
        return True


class StopTrainingOnNoModelImprovement:
    """Stop when `max_no_improvement_evals` evaluations in a row have not beaten the best mean
    return before them, counting only once `min_evals` evaluations were made."""

    def __init__(self, max_no_improvement_evals: int, min_evals: int = 0):
        if max_no_improvement_evals < 1:
            raise ValueError("max_no_improvement_evals must be >= 1")
        self.patience, self.min_evals = int(max_no_improvement_evals), int(min_evals)
        self.reason: str | None = None

    def __call__(self, agent, metrics: dict | None = None) -> bool:
        records = getattr(agent, "evaluations", None) or []
        since = evaluations_since_best(records)
        if len(records) > self.min_evals and since >= self.patience:
            best = max(r["mean_reward"] for r in records[:len(records) - since])
            self.reason = (f"{since} evaluations without beating the best mean return "
                           f"({best:.2f}); stop_patience is {self.patience}")
            return False
        return True


def evaluations_since_best(records: list[dict]) -> int:
    """How many evaluations came after the (first) best one."""
    if not records:
        return 0
    values = [r["mean_reward"] for r in records]
    return len(values) - 1 - values.index(max(values))


class CallbackList:
    """Call several callbacks in turn; training stops when one returns False (the others are
    still called that iteration)."""

    def __init__(self, callbacks: list[Callable[[Any, dict], Any]]):
        self.callbacks = list(callbacks)

    def __call__(self, agent, metrics: dict | None = None) -> bool:
        results = [callback(agent, metrics) for callback in self.callbacks]
        return not any(result is False for result in results)

    @property
    def reason(self) -> str | None:
        return next((getattr(c, "reason", None) for c in self.callbacks
                     if getattr(c, "reason", None)), None)


def as_callback(callback):
    """A callable of (agent, metrics), from None, one callable or a list of them."""
    if callback is None or callable(callback):
        return callback
    if isinstance(callback, (list, tuple)):
        return CallbackList(callback)
    raise TypeError(f"callback must be a callable or a list of them, got {type(callback).__name__}")
