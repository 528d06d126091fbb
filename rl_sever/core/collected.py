"""What a collector hands the training loop (rl_sever.core.loop) from one `collect()`: a module
of its own so that collectors in processes without TensorFlow (env runners) can build it."""

from __future__ import annotations

from typing import Any, NamedTuple


class Collected(NamedTuple):
    """What one `collect()` hands the training loop."""

    steps: int
    """Env steps taken (over all sub-envs)."""
    batch: Any = None
    """A batch to train on (the loop audits the first one before `agent.train(batch)`)."""
    metrics: Any = None
    """Raw metrics of updates collect() already ran (`agent.logged_metrics(metrics)`)."""
    update: Any = None
    """With `batch`: what trains on it after the audit, returning raw metrics, instead of
    `agent.train(batch)` (an in-graph iteration that collects the same batch again)."""
    scalars: Any = None
    """Scalars logged as they are (e.g. runners/restarts of Ray env runners)."""
