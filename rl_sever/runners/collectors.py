"""Collectors whose envs step in Ray actors (config `runners`), in place of the family's
local collectors for rl_sever.core.loop.

On-policy (`RolloutRunners`): synchronous. Every iteration the weights of the last update go
out once; each runner returns one rollout of its k = n_envs / runners sub-envs; the rollouts
are joined along the env axis into the [n_steps, n_envs] batch a local collection gives, so an
update sees the same batch distribution (the sub-envs are seeded as a local run's; runner 0
of one runner collects bit for bit what a local run collects).

Asynchronous on-policy (`AsyncRolloutRunners`, IMPALA): see its docstring.

Off-policy (`ReplayRunners`): runners step chunks of `steps_per_iteration` vector steps
(rounded up to train_freq) while the learner updates on the previous chunk, so acting lags
the learner by one chunk of updates at most; a runner that delivered its chunk starts the next
at once, without waiting for the slowest runner. The steps enter the replay in the order a local run adds
them (all sub-envs of one vector step together) and the updates keep the config's ratio:
`gradient_steps` gradient steps every `train_freq` vector steps, once the replay is ready.
"""

from __future__ import annotations

import numpy as np

from envs import episode_stats
from rl_sever.core import counters, metrics
from rl_sever.core.collected import Collected
from rl_sever.core.rollout import Step
from rl_sever.runners.group import RunnerGroup
from rl_sever.runners.normalizer import merge_moments, stats_of


def join(parts: list, axis: int):
    """Fields of several runners' batches joined along the env `axis` (dicts per key; absent
    fields, empty tuples, stay absent)."""
    out = []
    for values in zip(*parts):
        if isinstance(values[0], dict):
            out.append({key: np.concatenate([v[key] for v in values], axis) for key in values[0]})
        elif isinstance(values[0], tuple):
            out.append(())
        else:
            out.append(np.concatenate(values, axis))
    return type(parts[0])(*out)


class _Runners:
    def __init__(self, agent):
        self.agent = agent
        self.group = RunnerGroup(agent, on_restart=self.on_restart)
        self.stats = episode_stats(agent.env)

    def on_restart(self, index: int) -> None:
        pass

    def send(self):
        """What every call takes: the acting weights and the normaliser statistics."""
        normalizer = self.agent.normalizer
        return self.group.weights(), None if normalizer is None else stats_of(normalizer)

    def absorb(self, results: list[dict]) -> None:
        """Episodes and normaliser moments of the runners' results, in runner order."""
        for r in results:
            if len(r["returns"]):
                self.stats.record_episodes(r["returns"], r["lengths"])
            if r["moments"] is not None:
                merge_moments(self.agent.normalizer, r["moments"])

    def close(self) -> None:
        self.group.close()


class RolloutRunners(_Runners):
    """Synchronous on-policy collection on runners (see the module docstring)."""

    def collect(self) -> Collected:
        step = counters.read(self.agent.global_step)
        weights, stats = self.send()
        results = self.group.run_all("rollout", weights, step, stats)
        self.absorb(results)
        batch = join([r["batch"] for r in results], axis=1)
        return Collected(sum(r["steps"] for r in results), batch=batch,
                         scalars=self.group.scalars())


class AsyncRolloutRunners(_Runners):
    """On-policy collection on runners that never wait for the learner (IMPALA). Each runner,
    once it delivered a rollout, starts the next at once with the newest weights; an update
    takes the next `runners` rollouts to arrive (from any runners: each column is one sub-env's
    stretch of steps), so the batch keeps the [n_steps, n_envs] shape. Their policy lag, the
    updates between the weights a rollout was collected with and the learner's, is logged."""

    def __init__(self, agent):
        super().__init__(agent)
        self.version = 0  # updates the learner made since these runners started
        self.in_flight: dict = {}  # object ref -> (Pending, the version it acts with)
        self.issued = 0  # env steps handed out: each rollout's sampler seed
        self._sent = None  # (version, weights, statistics) of the newest put

    def _submit(self, index: int) -> None:
        if self._sent is None or self._sent[0] != self.version:
            self._sent = (self.version, *self.send())
        _, weights, stats = self._sent
        pending = self.group.submit(index, "rollout", weights, self.issued, stats)
        self.issued += self.group.k * self.agent.config.n_steps
        self.in_flight[pending.ref] = (pending, self.version)

    def collect(self) -> Collected:
        ray = self.group.ray
        if not self.in_flight:
            self.issued = max(self.issued, counters.read(self.agent.global_step))
            for i in range(self.group.count):
                self._submit(i)
        results, lags = [], []
        while len(results) < self.group.count:
            (ref,), _ = ray.wait(list(self.in_flight), num_returns=1)
            pending, version = self.in_flight.pop(ref)
            results.append(self.group.get(pending))
            lags.append(self.version - version)
            self._submit(pending.index)  # acts with the newest weights while the learner trains
        self.version += 1
        self.absorb(results)
        batch = join([r["batch"] for r in results], axis=1)
        scalars = {**self.group.scalars(), "runners/policy_lag_mean": float(np.mean(lags)),
                   "runners/policy_lag_max": float(np.max(lags))}
        return Collected(sum(r["steps"] for r in results), batch=batch, scalars=scalars)


class ReplayRunners(_Runners):
    """Off-policy collection on runners, one chunk ahead of the learner (see the docstring)."""

    def __init__(self, agent):
        super().__init__(agent)
        cfg = agent.config
        self.train_freq, self.n_envs = cfg.train_freq, cfg.n_envs
        self.chunk = -(-cfg.steps_per_iteration // cfg.train_freq) * cfg.train_freq
        self.since_update = 0
        self.updated = counters.read(agent.n_updates) > 0
        self.owed = 0  # updates due in the chunk whose first update the loop audited
        self.pending = None  # the runners' calls for the next chunk
        self.next_step = None  # the env step that chunk starts at
        self.pending_nvec = 0  # its vector steps

    def on_restart(self, index: int) -> None:
        k = self.group.k
        self.agent.replay.cut_episodes(range(index * k, (index + 1) * k))

    def _ready(self) -> bool:
        replay = self.agent.replay
        return len(replay) >= max(1, min(self.agent.config.learning_starts, replay.capacity))

    def _chunk(self, step: int) -> int:
        """Vector steps of the chunk that starts at env step `step` (0: the run is done)."""
        remaining = counters.read(self.agent.target_steps) - step
        return 0 if remaining <= 0 else max(1, min(self.chunk, -(-remaining // self.n_envs)))

    def _submit(self, index: int, step: int, n_vec: int, sent):
        weights, stats = sent
        return self.group.submit(index, "transitions", weights, step, n_vec,
                                 self.agent.config.learning_starts, stats)

    def _gather(self, step: int) -> list[dict]:
        """The chunk starting at `step` from every runner; each runner, as soon as it delivered,
        is sent its next chunk (no runner waits for the slowest one)."""
        sent = self.send()  # the weights of the last update, for every call made here
        if self.pending is None or self.next_step != step:  # first call, or after a load
            self.pending_nvec = self._chunk(step)
            self.pending = [self._submit(i, step, self.pending_nvec, sent)
                            for i in range(self.group.count)]
        n_vec = self.pending_nvec  # what the calls in flight were asked for
        next_step = step + n_vec * self.n_envs
        n_next = self._chunk(next_step)
        results, following = [None] * self.group.count, [None] * self.group.count
        waiting = {p.ref: p for p in self.pending}
        while waiting:
            (ref,), _ = self.group.ray.wait(list(waiting), num_returns=1)
            pending = waiting.pop(ref)
            results[pending.index] = self.group.get(pending)
            if n_next:
                following[pending.index] = self._submit(pending.index, next_step, n_next, sent)
        self.pending, self.next_step = (following if n_next else None), next_step
        self.pending_nvec = n_next
        return results

    def finish(self):
        """The updates owed after the audited first update, when the run ends before the next
        chunk (rl_sever.core.loop): their raw metrics, or None."""
        stats = None
        for _ in range(self.owed):
            stats = self._update(stats)
        self.owed = 0
        return stats

    def _update(self, stats):
        out = self.agent.update(self.agent.sample_batch())
        return metrics.add(stats, out)

    def collect(self) -> Collected:
        agent = self.agent
        step = counters.read(agent.global_step)
        stats = self.finish()
        results = self._gather(step)
        steps = sum(r["steps"] for r in results)
        self.absorb(results)
        rows = join([r["batch"] for r in results], axis=1)
        audit_batch = None
        for t in range(len(rows.rewards)):
            agent.replay.add(Step(*(_row(x, t) for x in rows)))
            self.since_update += 1
            if self.since_update < self.train_freq or not self._ready():
                continue
            self.since_update = 0
            if not self.updated:
                self.updated = True
                audit_batch = agent.sample_batch()
            elif audit_batch is not None:
                self.owed += 1  # run before the next chunk: the audit comes first
            else:
                stats = self._update(stats)
        scalars = self.group.scalars()
        if audit_batch is not None:
            return Collected(steps, batch=audit_batch, scalars=scalars)
        return Collected(steps, metrics=stats, scalars=scalars)


def _row(x, t: int):
    if isinstance(x, tuple):  # an absent field
        return x
    if isinstance(x, dict):
        return {key: v[t] for key, v in x.items()}
    return x[t]
