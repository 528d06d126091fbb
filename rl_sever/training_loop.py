"""The shared training loop: collect -> update -> log -> checkpoint, in plain Python around
the agent's compiled act and update steps.

The agent supplies a collector (`agent.make_collector()`): an object whose
`collect(obs) -> (obs, batch or None, env_steps)` steps the vector env and returns what
`agent.train(batch)` consumes. On-policy agents use OnPolicyCollector below.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from envs.autoreset import reached_observations
from rl_sever.audit import run_audit
from rl_sever.buffers import RolloutBuffer
from rl_sever.compiled import FastCall
from rl_sever.events import truncate_events_after
from rl_sever.logger import Logger
from rl_sever.progress import Progress


class OnPolicyCollector:
    """Fills a rollout buffer with n_steps transitions from every sub-env."""

    def __init__(self, agent):
        self.agent = agent
        cfg = agent.config
        self.buffer = RolloutBuffer(cfg.n_steps, cfg.n_envs, agent.obs_shape,
                                    agent.obs_dtype.as_numpy_dtype, agent.action.shape,
                                    agent.action.dtype)
        # One act call per vector step: skip tf.function's per-call dispatch (rl_sever.compiled).
        self.act = FastCall(agent.act_fn)

    def collect(self, obs: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray], int]:
        agent, buf = self.agent, self.buffer
        buf.reset()
        while not buf.full:
            actions = self.act(obs).numpy()
            next_obs, reward, terminated, truncated, info = agent.env.step(agent.env_actions(actions))
            reached = reached_observations(next_obs, info)  # true final obs at episode ends
            buf.add(obs, actions, reward, terminated, truncated, reached)
            obs = next_obs
        return obs, buf.arrays(), buf.n_steps * buf.n_envs


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
    collector = agent.make_collector()
    stats = episode_stats(agent.env)
    if agent._obs is None:
        agent._obs, _ = agent.env.reset(seed=cfg.seed + start_step)
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
            agent._obs, batch, n = collector.collect(agent._obs)
            step += n
            iteration += 1
            # Python ints are the loop's counters; the checkpointed variables follow them.
            agent.global_step.assign(step)
            agent.iteration.assign(iteration)
            stats.pop_finished()  # the window statistics are what we log
            if batch is not None:  # None: an off-policy agent still before learning_starts
                if first_update and cfg.audit:
                    run_audit(agent, batch, writer=logger.writer, step=step, enforce=True)
                first_update = False
                logger.record_many(agent.train(batch))
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
    from rl_sever.evaluation import evaluate

    result = evaluate(agent, cfg.eval_episodes, seed=cfg.seed + 10_000)
    agent.last_eval = result
    return {"mean_reward": result["mean_reward"], "mean_ep_length": result["mean_ep_length"]}


def _next_multiple(step: int, every: int) -> int:
    return (step // every + 1) * every if every else 0
