"""The off-policy collector: act -> env.step -> store in replay -> update every train_freq steps.

One `collect()` call is one training-loop iteration: up to `steps_per_iteration` vector-env
steps, so logging and progress cost nothing per env step. Updates are interleaved with the
steps exactly as in SB3 (act, step, store, and every `train_freq` steps one update of
`gradient_steps` gradient steps), each one compiled call that also returns the next action.

The first update of a run is handed to the loop instead (the sampled batch is returned), so the
gradient-flow audit checks the contract before any parameter moves; `agent.train` on that batch
runs the same update-and-act call (`first_update_obs`), so the update is traced once, not twice
(a SAC gradient step's trace is about half a second). Later updates run here and the iteration
returns their summed raw metrics for `agent.logged_metrics`.
"""

from __future__ import annotations

import numpy as np

from rl_sever.core import counters, metrics
from rl_sever.core.collected import Collected
from rl_sever.core.finite import FiniteGuard
from rl_sever.core.rollout import GymnasiumStepper, env_step


class OffPolicyCollector:
    def __init__(self, agent):
        self.agent = agent
        cfg = agent.config
        self.n_envs, self.train_freq = cfg.n_envs, cfg.train_freq
        # Whole updates per iteration: round the chunk up to a multiple of train_freq.
        self.chunk = -(-cfg.steps_per_iteration // cfg.train_freq) * cfg.train_freq
        self.learning_starts = cfg.learning_starts
        self.warmup_until = cfg.learning_starts  # uniformly random actions before this env step
        self.since_update = 0
        self.updated = int(agent.n_updates.numpy()) > 0
        self.obs: np.ndarray | None = None  # the env's current observation between calls
        self.next_actions: np.ndarray | None = None  # for self.obs, from the last update call
        self._handed: tuple | None = None  # (the first update's batch, the obs it acts on)
        self.guard = FiniteGuard(cfg.check_finite)
        self.stepper = GymnasiumStepper(agent.env, self.guard)  # the env behind env_step

    def _ready(self) -> bool:
        replay = self.agent.replay
        return len(replay) >= max(1, min(self.learning_starts, replay.capacity))

    def first_update_obs(self, batch) -> np.ndarray | None:
        """The observations the first update's call acts on, when `batch` is the batch this
        collector handed to the loop (once); its actions go to `next_actions`."""
        handed, self._handed = self._handed, None
        return handed[1] if handed is not None and handed[0] is batch else None

    def collect(self) -> Collected:
        agent, replay, env = self.agent, self.agent.replay, self.agent.env
        self._handed = None  # a hand-off the loop did not train on (an audit that stopped)
        step = counters.read(agent.global_step)
        if self.obs is None:  # a fresh run, or a loaded agent: seeded like the run's step
            self.obs, _ = env.reset(seed=agent.config.seed + step)
            self.guard.check("observation", self.obs, step)
        obs = self.obs
        remaining = counters.read(agent.target_steps) - step
        n_vec = max(1, min(self.chunk, -(-remaining // self.n_envs)))
        stats, steps = None, 0
        for _ in range(n_vec):
            if step < self.warmup_until:
                unit = replay.rng.uniform(-1.0, 1.0,
                                          (self.n_envs, agent.action_dim)).astype(np.float32)
            elif self.next_actions is not None:
                unit = self.next_actions  # computed for `obs` by the update that just ran
            else:
                unit = agent.act_unit(obs)
            self.next_actions = None
            _, obs, _ = env_step(self.stepper, step, obs, unit, agent.to_env(unit), replay)
            step += self.n_envs
            steps += self.n_envs
            self.since_update += 1
            if self.since_update < self.train_freq or not self._ready():
                continue
            self.since_update = 0
            batch = agent.sample_batch()
            if not self.updated:
                self.updated = True
                # Its call acts for `obs` too, unless the next action is a warm-up one.
                self.obs = obs
                self._handed = (batch, obs) if step >= self.warmup_until else None
                return Collected(steps, batch=batch)  # the loop audits, then agent.train(batch)
            out, self.next_actions = agent.update_and_act(batch, obs)
            stats = metrics.add(stats, out)
        self.obs = obs
        return Collected(steps, metrics=stats)
