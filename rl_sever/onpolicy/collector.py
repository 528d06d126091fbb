"""The on-policy collector: n_steps vector-env steps of the compiled policy into a rollout buffer."""

from __future__ import annotations

import numpy as np

from rl_sever.core import counters
from rl_sever.core.action_masks import MaskReader
from rl_sever.core.compiled import FastCall
from rl_sever.core.finite import FiniteGuard
from rl_sever.core.loop import Collected
from rl_sever.core.rollout import GymnasiumStepper, RolloutBuffer, env_step
from rl_sever.onpolicy.host_policy import make_host_policy


class OnPolicyCollector:
    """Fills a rollout buffer with n_steps transitions from every sub-env."""

    def __init__(self, agent):
        self.agent = agent
        cfg = agent.config
        self.buffer = RolloutBuffer(cfg.n_steps, cfg.n_envs, agent.layout)
        # One act call per vector step: a NumPy copy of a small MLP policy on CPU, else the
        # compiled act step without tf.function's per-call dispatch (rl_sever.core.compiled).
        self.host = make_host_policy(agent.model, cfg.host_act, agent.data_seed)
        # Traced only where it acts (tracing it for a host-acting run cost 0.3 s of start-up).
        self.act = FastCall(agent.behave_fn) if self.host is None else None
        self.obs: np.ndarray | None = None  # the env's current observation between calls
        self.state: np.ndarray | None = None  # a recurrent policy's state, zero at episode starts
        # The step this collector's last rollout ended at, which the update on it set as the
        # global step (rl_sever.core.loop); None: read the variable (after `invalidate`).
        self.next_step: int | None = None
        self.guard = FiniteGuard(cfg.check_finite)
        masks = MaskReader(agent.env, cfg.n_envs, agent.layout.mask_dim) if agent.masked else None
        self.stepper = GymnasiumStepper(agent.env, self.guard, masks)  # the env behind env_step

    def invalidate(self) -> None:
        """The weights or the step may have been set outside the loop: read both again."""
        if self.host is not None:
            self.host.invalidate()
        self.next_step = None

    def collect(self) -> Collected:
        agent, buf = self.agent, self.buffer
        step = counters.read(agent.global_step) if self.next_step is None else self.next_step
        start = step
        if self.obs is None:  # a fresh run, or a loaded agent: seeded like the run's step
            self.obs = self.stepper.reset(agent.data_seed + step, step)
            self.state = np.zeros((buf.n_envs, agent.layout.state_dim), np.float32)
        obs, stepper = self.obs, self.stepper
        buf.reset()
        if self.host is not None:
            self.host.sync(step)  # the weights of the last update; the sampler reseeded
        while not buf.full:
            mask = stepper.mask  # None without masks
            inputs = (obs, *([self.state] if agent.recurrent else []),
                      *([] if mask is None else [mask]))
            if self.host is not None:  # log-probs and values: batched after the rollout
                out, behaviour = self.host.sample(*inputs), {}
                actions, *state = out if agent.recurrent else (out,)
            else:
                actions, log_prob, value, *state = (np.asarray(x) for x in self.act(*inputs))
                behaviour = {"log_prob": log_prob, "value": value}
            if mask is not None:
                behaviour["action_mask"] = mask
            if agent.recurrent:
                behaviour["state"] = self.state
            _, obs, record = env_step(stepper, step, obs, actions, agent.env_actions(actions), buf,
                                      **behaviour)
            if agent.recurrent:  # the next state; zero where an episode ended
                self.state = np.where((record.terminated | record.truncated)[:, None], 0.0,
                                      state[0]).astype(np.float32)
            step += buf.n_envs
        if self.host is not None:
            data = buf.arrays()
            data.log_prob[:], data.value[:] = self.host.behaviour(data.obs, data.actions,
                                                                  data.get("action_mask"))
        # Every worker of a multi-worker run collects as much: the run's steps count them all,
        # and so does the global step the update on this rollout sets.
        steps = buf.n_steps * buf.n_envs * agent.replicas.workers
        self.obs, self.next_step = obs, start + steps
        return Collected(steps, batch=buf.arrays())
