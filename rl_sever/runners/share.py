"""What every env runner shares, with or without TensorFlow: its share of the run's config, the
learner's normaliser statistics taken in, its result of a call (the batch, the finished
episodes, the normaliser moments), the acting answered by the central inference server, and
the off-policy chunks of steps. rl_sever.runners.runner (a copy of the agent) and
rl_sever.runners.host_runner (NumPy only) both build on it.
"""

from __future__ import annotations

import copy

import numpy as np

from envs import episode_stats
from rl_sever.core.finite import FiniteGuard
from rl_sever.core.rollout import GymnasiumStepper, Step, env_step
from rl_sever.runners.normalizer import moments_since, set_stats, stats_of


def runner_config(config, index: int, count: int):
    """The config of runner `index` of `count`: its share of the envs, its seed, no Ray, no
    audit."""
    cfg = copy.deepcopy(config)
    k = config.n_envs // count
    cfg.n_envs, cfg.seed = k, config.seed + index * k
    cfg.runners, cfg.audit, cfg.eval_episodes, cfg.eval_every = 0, False, 0, 0
    cfg.intra_op_threads = "auto"
    if cfg.vectorization == "async":  # a runner is one process: its envs step in it
        cfg.vectorization, cfg.n_workers = "sync", 0
    if hasattr(cfg, "n_steps") and hasattr(cfg, "batch_size"):  # PPO-like: a runner never
        cfg.batch_size = cfg.n_steps * k  # updates, but its config must validate with k envs
    if hasattr(cfg, "buffer_size"):  # off-policy: the learner's replay, not the runner's
        cfg.buffer_size = max(1, getattr(cfg, "batch_size", 1))
    return cfg


def take_stats(normalizer, stats):
    """Step from now on with the learner's statistics `stats` (if sent); returns the statistics
    the call's moments are measured from (None without a normaliser)."""
    if normalizer is None:
        return None
    if stats is not None:
        set_stats(normalizer, stats)
    return stats_of(normalizer)


def copied(batch):
    """A collector's batch as arrays it will not overwrite (the next rollout reuses its own)."""
    return type(batch)(*(copy_fields(x) for x in batch))


def call_result(env, normalizer, base, batch, steps: int, index: int) -> dict:
    """What a runner returns from one call: `batch`, the `steps` it took, the episodes `env`
    finished meanwhile, and the moments its `normalizer` saw since the statistics `base`."""
    finished = episode_stats(env).pop_finished()
    returns = np.array([r for r, _ in finished], np.float64)
    lengths = np.array([n for _, n in finished], np.int64)
    moments = None if normalizer is None else moments_since(base, stats_of(normalizer))
    return {"batch": batch, "steps": steps, "returns": returns, "lengths": lengths,
            "moments": moments, "index": index}


class Chunks:
    """Off-policy: a runner's envs stepped in chunks of vector steps, the observations kept
    between calls. Sub-env j of the runner's k is reset with `seed + step + j` at the first
    call's env step `step`; each chunk's generator is seeded by (seed, step)."""

    def __init__(self, env, check_finite, seed: int, k: int, action_dim: int, run_envs: int):
        self.stepper = GymnasiumStepper(env, FiniteGuard(check_finite))
        self.seed, self.k, self.action_dim, self.run_envs = seed, k, action_dim, run_envs
        self.obs = None

    def chunk(self, step: int, n_vec: int, warmup_until: int, act, to_env) -> Step:
        """`n_vec` vector steps from env step `step`: uniformly random unit actions while the
        run's step is below `warmup_until`, else `act(obs, rng)`; `to_env` maps unit actions to
        the env's. The Steps stacked [n_vec, k, ...]."""
        if self.obs is None:
            self.obs = self.stepper.reset(self.seed + step, step)
        rng = np.random.default_rng((self.seed, step))
        rows, obs = [], self.obs
        for _ in range(n_vec):
            if step < warmup_until:
                unit = rng.uniform(-1.0, 1.0, (self.k, self.action_dim)).astype(np.float32)
            else:
                unit = act(obs, rng)
            _, obs, record = env_step(self.stepper, step, obs, unit, to_env(unit))
            rows.append(record[:6])
            step += self.run_envs  # the run's env step: every runner stepped its share
        self.obs = obs
        return Step(*stack_rows(rows))


class RemoteAct:
    """A runner's act step answered by the inference server (rl_sever.runners.inference): a
    callable like the compiled one, returning NumPy arrays."""

    def __init__(self, ray, server):
        self.ray, self.server = ray, server

    def __call__(self, *inputs):
        return self.ray.get(self.server.act.remote(*inputs))


def copy_fields(x):
    """A field of a rollout as an array the collector will not overwrite (dicts per key)."""
    if isinstance(x, dict):
        return {key: np.array(v) for key, v in x.items()}
    return x if isinstance(x, tuple) else np.array(x)


def stack_rows(rows: list) -> list:
    """Steps' first six fields stacked along a new leading axis (a Dict observation per key)."""
    out = []
    for values in zip(*rows):
        if isinstance(values[0], dict):
            out.append({key: np.stack([v[key] for v in values]) for key in values[0]})
        else:
            out.append(np.stack(values))
    return out
