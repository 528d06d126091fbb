"""The on-policy collector: n_steps vector-env steps of the compiled policy into a rollout buffer."""

from __future__ import annotations

import numpy as np

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
        self.host = make_host_policy(agent.model, cfg.host_act, cfg.seed)
        self.act = FastCall(agent.behave_fn)
        self.obs: np.ndarray | None = None  # the env's current observation between calls
        self.guard = FiniteGuard(cfg.check_finite)
        self.stepper = GymnasiumStepper(agent.env, self.guard)  # the env behind env_step

    def collect(self) -> Collected:
        agent, buf, guard = self.agent, self.buffer, self.guard
        step = int(agent.global_step.numpy())
        if self.obs is None:  # a fresh run, or a loaded agent: seeded like the run's step
            self.obs, _ = agent.env.reset(seed=agent.config.seed + step)
            guard.check("observation", self.obs, step)
        obs = self.obs
        buf.reset()
        if self.host is not None:
            self.host.sync(step)  # the weights of the last update; the sampler reseeded
        while not buf.full:
            if self.host is not None:  # log-probs and values: batched after the rollout
                actions, behaviour = self.host.sample(obs), {}
            else:
                actions, log_prob, value = (x.numpy() for x in self.act(obs))
                behaviour = {"log_prob": log_prob, "value": value}
            _, obs, _ = env_step(self.stepper, step, obs, actions, agent.env_actions(actions), buf,
                                 **behaviour)
            step += buf.n_envs
        if self.host is not None:
            data = buf.arrays()
            data.log_prob[:], data.value[:] = self.host.behaviour(data.obs, data.actions)
        self.obs = obs
        return Collected(buf.n_steps * buf.n_envs, batch=buf.arrays())
