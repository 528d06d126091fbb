"""The shared training loop: collect -> update -> log -> checkpoint, in plain Python around
the agent's compiled act and update steps (checkpoint schedule, Ctrl-C and SIGTERM: docs/cli.md).

The agent supplies its collector (`agent.collector`, made once by `agent.make_collector()`): an
object that owns the env's current observation between iterations and learn() calls, and whose
`collect() -> Collected` steps the vector env (rl_sever.onpolicy.collector,
rl_sever.offpolicy.collector, and the in-graph ones). A `Collected` carries either a batch for
the loop to audit (first update) and train on, `agent.train(batch)`, or the raw metrics of
updates the collector already ran, `agent.logged_metrics(raw)`, or neither (an off-policy agent
still filling its buffer).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
import warnings

import tensorflow as tf

from envs import episode_stats
from rl_sever.audit import run_audit
from rl_sever.core import counters
from rl_sever.core.callbacks import as_callback
from rl_sever.core.collected import Collected  # noqa: F401  (its earlier import path, kept)
from rl_sever.core.disk import (
    WRITE_ERRORS,
    CheckpointDisk,
    clean_partial,
    is_write_error,
    newest_on_disk,
    reason,
    warn_if_it_will_not_fit,
)
from rl_sever.core.evaluations import BEST_DIR, Evaluations, next_multiple
from rl_sever.core.events import truncate_events_after
from rl_sever.core.finite import NonFiniteError, check_metrics, from_check_numerics
from rl_sever.core.logger import EventWriteWarning, Logger
from rl_sever.core.progress import Progress
from rl_sever.core.rundir import RunLock
from rl_sever.core.trackers import Trackers
from rl_sever.errors import WriteError


class Terminated(KeyboardInterrupt):
    """SIGTERM received: the loop stops as on Ctrl-C (checkpoint, resume hint, exit 130)."""


def _on_sigterm(signum, frame):
    raise Terminated()


def run_training(agent, *, progress: bool | None = None, callback=None) -> None:
    """Train `agent` until its target step; checkpoint periodically, at the end and when
    interrupted (Ctrl-C, SIGTERM)."""
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if main else None
    try:
        run_dir = agent.ensure_run_dir(write_config=False)
        # One writer per run folder (config.json, events, checkpoints): the chief's.
        chief = run_dir is not None and agent.replicas.is_chief
        with RunLock(run_dir) if chief else contextlib.nullcontext():
            _train(agent, progress, callback)
    finally:
        if main:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def checkpoint_interval(cfg, total: int) -> int:
    """Env steps between step-based checkpoints (0: none)."""
    return max(1, total // 10) if cfg.checkpoint_every < 0 else cfg.checkpoint_every


def _train(agent, progress: bool | None, callback) -> None:
    cfg = agent.config
    run_dir = agent.ensure_run_dir()
    start_step = int(agent.global_step.numpy())
    if run_dir is not None and start_step > 0:
        truncate_events_after(run_dir, start_step)  # a crash may have logged past the checkpoint
    # TensorBoard is the chief's: other workers of a multi-worker run log nothing.
    chief = agent.replicas.is_chief
    trackers = Trackers(cfg.trackers if chief else [], run_dir, cfg.tracker_project,
                        agent.hparams() if cfg.trackers else {})
    logger = Logger(run_dir if chief else None, trackers)
    disk = CheckpointDisk(agent, run_dir) if run_dir is not None else None
    if start_step == 0 and int(agent.iteration.numpy()) == 0:
        logger.hparams(agent.hparams())
    collector = agent.collector
    agent.invalidate_host_copies()  # the weights may have been set since the last learn()
    stats = episode_stats(agent.env)
    total = int(agent.target_steps.numpy())
    agent.plan_updates(total)  # the run's whole budget: a resume chooses as the run did
    if run_dir is not None and agent.replicas.is_chief:  # before the first step
        warn_if_it_will_not_fit(agent, run_dir, total - start_step)
    step, iteration = start_step, int(agent.iteration.numpy())
    bar = Progress(total, start=start_step, enabled=progress, every_s=cfg.progress_seconds)
    t0 = last_save = time.perf_counter()
    ckpt_every, ckpt_seconds = checkpoint_interval(cfg, total), 60.0 * cfg.checkpoint_minutes
    next_ckpt = next_multiple(step, ckpt_every)
    evaluations = Evaluations(agent, run_dir if agent.replicas.is_chief else None, start_step)
    callback = as_callback(callback)
    agent.stop_reason = None
    next_log = step
    # An off-policy run split before learning_starts has steps but no update yet: audit then.
    first_update = not agent.has_updated()
    try:
        while step < total:
            for module, frozen in agent.apply_freeze_schedule(step).items():
                logger.text(f"freeze/{module}", "frozen" if frozen else "trainable", step)
            for name, sched in agent.schedules.items():
                logger.record(f"train/{name}", sched.update(step / max(total, 1)))
            try:
                collected = collector.collect()
                step += collected.steps
                iteration += 1
                # Python ints are the loop's counters; the checkpointed variables follow them,
                # set by the update call itself where the agent can take them (an on-policy
                # agent's train), else here (and before the first update's audit).
                counted = (collected.batch is not None and collected.update is None
                           and getattr(agent, "counts_in_update", False))
                if not counted or first_update:
                    write_counters(agent, step, iteration)
                stats.pop_finished()  # the window statistics are what we log
                logged = None
                if collected.batch is not None:
                    if first_update and cfg.audit:
                        matrix, violations = run_audit(agent, collected.batch, step=step,
                                                       writer=logger.writer, enforce=True)
                        trackers.text("audit/flow_matrix", matrix.to_table(violations), step)
                    first_update = False
                    if collected.update is not None:
                        logged = agent.logged_metrics(collected.update())
                    else:
                        logged = (agent.train(collected.batch, counters=(step, iteration))
                                  if counted else agent.train(collected.batch))
                elif collected.metrics is not None:
                    first_update = False
                    logged = agent.logged_metrics(collected.metrics)
            except tf.errors.InvalidArgumentError as e:  # a compiled check_numerics
                error = from_check_numerics(e, step)
                if error is None:
                    raise
                raise error from None
            if logged is not None:
                check_metrics(logged, step)  # also where XLA dropped the compiled checks
                logger.record_many(logged)
            if collected.scalars:
                logger.record_many(collected.scalars)
            stop = evaluations.run(step, logger) if evaluations.due(step) else None
            if step >= next_log or step >= total:
                logger.record("rollout/ep_rew_mean", stats.mean_return())
                logger.record("rollout/ep_len_mean", stats.mean_length())
                logger.record("time/fps", (step - start_step) / max(time.perf_counter() - t0, 1e-9))
                logger.record("time/iterations", iteration)
                logger.dump(step)
                next_log = step + cfg.log_every_steps
            bar.update(step, stats.mean_return)
            due = (next_ckpt and step >= next_ckpt) or (
                ckpt_seconds and time.perf_counter() - last_save >= ckpt_seconds)
            if due and run_dir is not None and step < total:  # the end saves below
                disk.save()  # a failed write warns; the next interval tries again
                last_save = time.perf_counter()
                next_ckpt = next_multiple(step, ckpt_every)
            if stop is not None:
                agent.stop_reason = stop
                logger.dump(step)
                break
            if callback is not None:
                agent.invalidate_host_copies()  # a callback may set weights
                if callback(agent, logger.last) is False:
                    agent.stop_reason = getattr(callback, "reason", None) or "the callback"
                    break
        # Work a collector still owes the steps it handed in (updates of the audited chunk).
        owed = getattr(collector, "finish", lambda: None)()
        if owed is not None:
            logger.record_many(agent.logged_metrics(owed))
            logger.dump(step)
    except WriteError:
        write_counters(agent, step, iteration)  # an update that raised may not have set them
        bar.close()
        logger.close()
        _report_lost(logger)
        raise
    except NonFiniteError as e:
        write_counters(agent, step, iteration)
        bar.close()
        logger.close()
        latest = agent.checkpointer.latest if run_dir is not None else None
        if latest is not None:  # saved before the fault: nothing non-finite is saved after it
            e.args = (f"{e.args[0]}; the last checkpoint, {latest}, predates the fault",)
        raise
    except KeyboardInterrupt as e:
        write_counters(agent, step, iteration)  # the checkpoint counts the collected steps
        # A second Ctrl-C or SIGTERM must not cut the checkpoint being written.
        main = threading.current_thread() is threading.main_thread()
        if main:
            previous_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            bar.close()
            what = "terminated (SIGTERM)" if isinstance(e, Terminated) else "interrupted"
            if run_dir is not None:
                try:
                    saved = f"checkpoint saved to {agent.save()}"
                except WRITE_ERRORS as error:
                    if not is_write_error(error):
                        raise
                    directory = agent.checkpointer.directory
                    clean_partial(directory, int(agent.global_step.numpy()))
                    newest = newest_on_disk(directory)
                    saved = (f"checkpoint not written ({reason(error)}); " +
                             (f"the newest complete one is {newest}" if newest else
                              "no checkpoint was completed, so the run cannot resume"))
                print(f"\n{what} at step {int(agent.global_step.numpy()):,}; {saved}\nresume "
                      f"with: rl-sever train --resume {run_dir}", file=sys.stderr, flush=True)
            logger.close()
        finally:
            if main:
                signal.signal(signal.SIGINT, previous_int)
        raise
    except Exception:  # a bug, an env that crashed: the trackers' runs end too
        write_counters(agent, step, iteration)
        bar.close()
        logger.close()
        raise
    bar.close(step, stats.mean_return())
    if run_dir is not None:
        try:
            disk.save(final=True)
        except WriteError:
            _report_lost(logger)
            raise
    agent.discard_worker_dir()  # a non-chief worker's checkpoints were scratch
    evaluations.final(step, logger)
    if run_dir is not None:
        trackers.artifact(run_dir / BEST_DIR, "best")
    logger.close()
    _report_lost(logger)


def write_counters(agent, step: int, iteration: int) -> None:
    """Set the agent's checkpointed counters to the loop's."""
    counters.write(agent.global_step, step)
    counters.write(agent.iteration, iteration)


def _report_lost(logger: Logger) -> None:
    if logger.lost_points:
        warnings.warn(f"{logger.lost_points:,} TensorBoard points could not be written to "
                      f"{logger.logdir} (the disk refused them)", EventWriteWarning, stacklevel=3)
