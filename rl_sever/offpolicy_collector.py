"""The off-policy collector: act -> env.step -> store in replay -> update every train_freq steps.

One `collect()` call is one training-loop iteration: up to `steps_per_iteration` vector-env
steps, so logging and progress cost nothing per env step. Updates are interleaved with the
steps exactly as in SB3 (act, step, store, and every `train_freq` steps one update of
`gradient_steps` gradient steps), each one compiled call that also returns the next action.

The first update of a run is handed to the loop instead (the sampled batch is returned), so the
gradient-flow audit checks the contract before any parameter moves. Later updates run here and
the iteration returns an `UpdateSummary` whose metrics `agent.train` passes through.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from envs.autoreset import reached_observations


@dataclass
class UpdateSummary:
    """Stands for the updates a collect() already ran: [metric sums..., metric counts...]."""

    stats: np.ndarray


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

    def _ready(self) -> bool:
        replay = self.agent.replay
        return len(replay) >= max(1, min(self.learning_starts, replay.capacity))

    def collect(self, obs: np.ndarray):
        agent, replay, env = self.agent, self.agent.replay, self.agent.env
        step = int(agent.global_step.numpy())
        remaining = int(agent.target_steps.numpy()) - step
        n_vec = max(1, min(self.chunk, -(-remaining // self.n_envs)))
        stats, steps = None, 0
        for _ in range(n_vec):
            if step < self.warmup_until:
                unit = replay.rng.uniform(-1.0, 1.0, (self.n_envs, agent.action_dim)).astype(
                    np.float32
                )
            elif agent.next_actions is not None and agent.next_actions[0] is obs:
                unit = agent.next_actions[1]  # computed by the update that just ran
            else:
                unit = agent.act_unit(obs)
            agent.next_actions = None
            next_obs, rewards, terminated, truncated, info = env.step(agent.to_env(unit))
            reached = reached_observations(next_obs, info)  # true final obs at episode ends
            replay.add(obs, unit, rewards, terminated, truncated, reached)
            obs = next_obs
            step += self.n_envs
            steps += self.n_envs
            self.since_update += 1
            if self.since_update < self.train_freq or not self._ready():
                continue
            self.since_update = 0
            batch = agent.sample_batch()
            if not self.updated:
                self.updated = True
                return obs, batch, steps  # the loop audits, then agent.train(batch) updates
            out, actions = agent.update_and_act(batch, obs)
            agent.next_actions = (obs, actions)
            stats = out if stats is None else stats + out
        return obs, (UpdateSummary(stats) if stats is not None else None), steps
