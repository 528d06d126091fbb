"""The on-policy collection loop: n_steps vector-env steps of a policy into a rollout buffer,
given what acts. It imports no TensorFlow: an env runner acting with a NumPy policy runs it
without (rl_sever.runners.host_runner); rl_sever.onpolicy.collector makes it from an agent."""

from __future__ import annotations

import numpy as np

from rl_sever.core.action_masks import MaskReader
from rl_sever.core.collected import Collected
from rl_sever.core.finite import FiniteGuard
from rl_sever.core.rollout import GymnasiumStepper, RolloutBuffer, env_step


class RolloutCollector:
    """Fills a rollout buffer with n_steps transitions from every sub-env of `agent.env`."""

    def __init__(self, agent, host=None, act=None):
        """What acts: `host` (a NumPy policy, rl_sever.onpolicy.numpy_policy) or `act` (a
        callable like the compiled act step). `agent`: what the loop reads of one (its config's
        n_steps, n_envs and check_finite, layout, env, data_seed, masked, recurrent,
        env_actions, replicas.workers)."""
        self.agent = agent
        cfg = agent.config
        self.buffer = RolloutBuffer(cfg.n_steps, cfg.n_envs, agent.layout)
        self.host, self.act = host, act
        self.obs: np.ndarray | None = None  # the env's current observation between calls
        self.state: np.ndarray | None = None  # a recurrent policy's state, zero at episode starts
        # The step this collector's last rollout ended at, which the update on it set as the
        # global step (rl_sever.core.loop); None: ask `read_step` (the agent's collector's
        # `invalidate` sets it so).
        self.next_step: int | None = None
        self.guard = FiniteGuard(cfg.check_finite)
        masks = MaskReader(agent.env, cfg.n_envs, agent.layout.mask_dim) if agent.masked else None
        self.stepper = GymnasiumStepper(agent.env, self.guard, masks)  # the env behind env_step

    def collect(self) -> Collected:
        agent, buf = self.agent, self.buffer
        step = self.read_step() if self.next_step is None else self.next_step
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

    def read_step(self) -> int:
        """The env step to continue from when no rollout of this collector set it."""
        raise RuntimeError("the collector was not given the step to start from")
