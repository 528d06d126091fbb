"""The shared training loop: collect -> update -> log -> checkpoint, in plain Python around
the agent's compiled act and update steps.

The agent supplies its collector (`agent.collector`, made once by `agent.make_collector()`): an
object that owns the env's current observation between iterations and learn() calls, and whose
`collect() -> Collected` steps the vector env (rl_sever.onpolicy.collector,
rl_sever.offpolicy.collector, and the in-graph ones). A `Collected` carries either a batch for
the loop to audit (first update) and train on, `agent.train(batch)`, or the raw metrics of
updates the collector already ran, `agent.logged_metrics(raw)`, or neither (an off-policy agent
still filling its buffer).
"""

from __future__ import annotations

import sys
import time
from typing import Any, NamedTuple

from rl_sever.audit import run_audit
from rl_sever.core.events import truncate_events_after
from rl_sever.core.logger import Logger
from rl_sever.core.progress import Progress


class Collected(NamedTuple):
    """What one `collect()` hands the training loop."""

    steps: int
    """Env steps taken (over all sub-envs)."""
    batch: Any = None
    """A batch to train on (the loop audits the first one before `agent.train(batch)`)."""
    metrics: Any = None
    """Raw metrics of updates collect() already ran (`agent.logged_metrics(metrics)`)."""


def run_training(agent, *, progress: bool | None = None, callback=None) -> None:
    """Train `agent` until its target step; checkpoint at the end and on Ctrl-C."""
    from envs import episode_stats

    cfg = agent.config
    run_dir = agent.ensure_run_dir()
    start_step = int(agent.global_step.numpy())
    if run_dir is not None and start_step > 0:
        truncate_events_after(run_dir, start_step)  # a crash may have logged past the checkpoint
    # TensorBoard is the chief's: other workers of a multi-worker run log nothing.
    logger = Logger(run_dir if agent.replicas.is_chief else None)
    if start_step == 0 and int(agent.iteration.numpy()) == 0:
        logger.hparams(agent.hparams())
    collector = agent.collector
    stats = episode_stats(agent.env)
    total = int(agent.target_steps.numpy())
    step, iteration = start_step, int(agent.iteration.numpy())
    bar = Progress(total, start=start_step, enabled=progress)
    t0 = time.perf_counter()
    next_ckpt = _next_multiple(step, cfg.checkpoint_every)
    next_eval = _next_multiple(step, cfg.eval_every)
    next_log = step
    # An off-policy run split before learning_starts has steps but no update yet: audit then.
    first_update = not agent.has_updated()
    try:
        while step < total:
            for module, frozen in agent.apply_freeze_schedule(step).items():
                logger.text(f"freeze/{module}", "frozen" if frozen else "trainable", step)
            for name, sched in agent.schedules.items():
                logger.record(f"train/{name}", sched.update(step / max(total, 1)))
            collected = collector.collect()
            step += collected.steps
            iteration += 1
            # Python ints are the loop's counters; the checkpointed variables follow them.
            agent.global_step.assign(step)
            agent.iteration.assign(iteration)
            stats.pop_finished()  # the window statistics are what we log
            if collected.batch is not None:
                if first_update and cfg.audit:
                    run_audit(agent, collected.batch, writer=logger.writer, step=step, enforce=True)
                first_update = False
                logger.record_many(agent.train(collected.batch))
            elif collected.metrics is not None:
                first_update = False
                logger.record_many(agent.logged_metrics(collected.metrics))
            if next_eval and step >= next_eval:
                logger.record_many(_evaluate(agent, cfg), prefix="eval/")
                next_eval = _next_multiple(step, cfg.eval_every)
            if step >= next_log or step >= total:
                logger.record("rollout/ep_rew_mean", stats.mean_return())
                logger.record("rollout/ep_len_mean", stats.mean_length())
                logger.record("time/fps", (step - start_step) / max(time.perf_counter() - t0, 1e-9))
                logger.record("time/iterations", iteration)
                logger.dump(step)
                next_log = step + cfg.log_every_steps
            bar.update(step, stats.mean_return())
            if next_ckpt and step >= next_ckpt and run_dir is not None:
                agent.save()
                next_ckpt = _next_multiple(step, cfg.checkpoint_every)
            if callback is not None and callback(agent, logger.last) is False:
                break
    except KeyboardInterrupt:
        bar.close()
        if run_dir is not None:
            path = agent.save()
            print(f"\ninterrupted at step {int(agent.global_step.numpy()):,}; checkpoint saved to "
                  f"{path}\nresume with: rl-sever train --resume {run_dir}", file=sys.stderr)
        logger.close()
        raise
    bar.close()
    if run_dir is not None:
        agent.save()
    agent.discard_worker_dir()  # a non-chief worker's checkpoints were scratch
    if cfg.eval_episodes > 0 and not cfg.eval_every and agent.env_id != "custom":
        logger.record_many(_evaluate(agent, cfg), prefix="eval/")
        logger.dump(step)
    logger.close()


def _evaluate(agent, cfg) -> dict[str, float]:
    from rl_sever.core.evaluation import evaluate

    result = evaluate(agent, cfg.eval_episodes, seed=cfg.seed + 10_000)
    agent.last_eval = result
    return {"mean_reward": result["mean_reward"], "mean_ep_length": result["mean_ep_length"]}


def _next_multiple(step: int, every: int) -> int:
    return (step // every + 1) * every if every else 0
