"""The learner's side of env runners: the Ray actors (rl_sever.runners.runner.EnvRunner), the
weights sent once per update through Ray's object store, and what happens when a runner dies.

A runner process that dies (killed, out of memory, its node lost) is restarted by Ray
(`max_restarts=-1`); its call is made again on the new process, with the same weights, so a
synchronous rollout keeps its semantics. The episodes that runner had in flight are lost:
counted in `runners/dropped_episodes` beside `runners/restarts`. A runner that dies
MAX_FAILURES times in a row without delivering, or does not come back within
RESTART_TIMEOUT_S, stops the run. An error raised inside a runner (a bad env, a non-finite
observation, its set-up) is raised here as itself.
"""

from __future__ import annotations

import logging
import time
from typing import Any, NamedTuple

import numpy as np

from rl_sever.core.agent import Agent
from rl_sever.errors import ClusterError, ConfigError
from rl_sever.onpolicy.collector import OnPolicyCollector
from rl_sever.onpolicy.host_policy import host_act_reason, policy_shape, policy_variables
from rl_sever.runners.cluster import connect, import_ray, on_this_node, raised_in, release
from rl_sever.runners.host_runner import HostRunner, RunnerPlan
from rl_sever.runners.inference import InferenceServer
from rl_sever.runners.runner import EnvRunner
from rl_sever.runners.share import runner_config

MAX_FAILURES = 5
RESTART_TIMEOUT_S = 300.0
log = logging.getLogger("rl_sever.runners")


class Pending(NamedTuple):
    index: int
    method: str
    args: tuple
    ref: Any


class RunnerGroup:
    """`config.runners` EnvRunner actors for `agent` (its class, env id and config)."""

    def __init__(self, agent, on_restart=None):
        """`on_restart(index)`: called when runner `index` was restarted (its episodes ended
        without a last step)."""
        cfg = agent.config
        if not isinstance(getattr(agent, "env_id", None), str) or agent.env_id == "custom":
            raise ConfigError("runners build their envs from an env id: pass the env as a "
                              "string (a module:Id string registers a user's env in every runner)")
        self.ray = import_ray()
        self.count, self.k = cfg.runners, cfg.n_envs // cfg.runners
        connect(cfg.ray_address, cfg.runners, cfg.runner_cpus)
        try:
            # SPREAD: the runners go to every node of a cluster, not first to the learner's.
            self.server = None
            if cfg.runner_inference == "central":  # on the learner's node, acting for all
                self.server = self.ray.remote(InferenceServer).options(
                    num_cpus=1, max_restarts=0, scheduling_strategy=on_this_node()).remote(
                    type(agent), agent.env_id, cfg, cfg.runners, agent.user_encoder)
            plans = host_runner_plans(agent, central=self.server is not None)
            self.without_tensorflow = plans is not None
            options = dict(num_cpus=cfg.runner_cpus, max_restarts=-1, max_task_retries=0,
                           scheduling_strategy="SPREAD")
            if plans is not None:  # no TensorFlow in the runners (rl_sever.runners.host_runner)
                actor = self.ray.remote(HostRunner).options(**options)
                self.actors = [actor.remote(plan, i, self.server) for i, plan in enumerate(plans)]
            else:
                actor = self.ray.remote(EnvRunner).options(**options)
                self.actors = [actor.remote(type(agent), agent.env_id, cfg, i, cfg.runners,
                                            agent.user_encoder, self.server)
                               for i in range(cfg.runners)]
        except BaseException:
            release()
            raise
        # What the runners (or the inference server) act with, in the order they take it.
        self.variables = (policy_variables(agent.model)
                          if plans is not None and self.server is None and plans[0].on_policy
                          else agent.acting_variables())
        self.restarts = 0
        self.dropped_episodes = 0
        self.failures = np.zeros(self.count, np.int64)  # deaths since it last delivered
        self.down = np.zeros(self.count)  # when it was found dead (0: it delivers)
        self.on_restart = on_restart or (lambda index: None)

    def weights(self):
        """The acting weights as NumPy, put once in the object store for every runner (with
        central inference: set on the inference server, and None for the runners)."""
        weights = self.ray.put([v.numpy() for v in self.variables])
        if self.server is None:
            return weights
        self.ray.get(self.server.set_weights.remote(weights))
        return None

    def submit(self, index: int, method: str, *args) -> Pending:
        return Pending(index, method, args, getattr(self.actors[index], method).remote(*args))

    def get(self, pending: Pending) -> Any:
        """The result of a call; a runner that died is restarted by Ray and asked again."""
        exceptions, i = self.ray.exceptions, pending.index
        while True:
            try:
                out = self.ray.get(pending.ref)
                self.down[i], self.failures[i] = 0.0, 0
                return out
            except exceptions.RayTaskError as e:  # raised inside the runner: raise it here
                raise raised_in(e) from None
            except exceptions.RayActorError as e:
                self._failed(i, e)
                pending = self.submit(i, pending.method, *pending.args)

    def _failed(self, i: int, error: Exception) -> None:
        """Runner `i`'s call failed because its process died or is being restarted."""
        if getattr(error, "actor_init_failed", False):  # its __init__ raised: say what
            raise _init_error(str(error)) from None
        now = time.monotonic()
        if not self.down[i]:  # the first failure since it last delivered: one death
            self.down[i] = now
            self.restarts += 1
            self.dropped_episodes += self.k  # every sub-env had an episode running
            log.warning("env runner %d died (%s); Ray restarts it and the call is made again",
                        i, type(error).__name__)
            self.on_restart(i)
        if isinstance(error, self.ray.exceptions.ActorUnavailableError):
            if now - self.down[i] > RESTART_TIMEOUT_S:
                raise ClusterError(f"env runner {i} did not come back within "
                                   f"{RESTART_TIMEOUT_S:.0f} s of dying") from None
            time.sleep(0.2)  # restarting: ask again shortly
            return
        self.failures[i] += 1
        if self.failures[i] >= MAX_FAILURES:
            raise ClusterError(f"env runner {i} died {MAX_FAILURES} times in a row: "
                               f"{str(error).splitlines()[0]}") from None

    def run_all(self, method: str, *args) -> list:
        """`method(*args)` on every runner at once; the results in runner order."""
        return [self.get(p) for p in [self.submit(i, method, *args) for i in range(self.count)]]

    def pids(self) -> list[int]:
        return self.run_all("pid")

    def scalars(self) -> dict[str, float]:
        return {"runners/restarts": float(self.restarts),
                "runners/dropped_episodes": float(self.dropped_episodes)}

    def close(self) -> None:
        if not self.actors:
            return
        for actor in self.actors:
            try:
                self.ray.kill(actor)
            except Exception:  # Ray already shut down: the actors went with it
                pass
        if self.server is not None:
            try:
                self.ray.kill(self.server)
            except Exception:
                pass
        self.actors = []
        release()


ENV_SETTINGS = ("n_envs", "vectorization", "n_workers", "normalize_obs", "normalize_reward",
                "gamma", "atari", "runners")


def host_runner_plans(agent, central: bool) -> list[RunnerPlan] | None:
    """The plans of runners without TensorFlow (rl_sever.runners.host_runner) for `agent`'s
    run, or None where each runner needs a copy of the agent: a user's encoder, a class that
    changes how its collector is made, the on-policy collector or how actions reach the env,
    and, unless the inference server acts (`central`), a policy NumPy cannot compute
    (rl_sever.onpolicy.host_policy; off-policy: rl_sever.offpolicy.host_acting's
    `runner_acting`)."""
    cfg, cls = agent.config, type(agent)
    if agent.user_encoder is not None or cls.make_collector is not Agent.make_collector:
        return None
    on_policy = agent.mode == "on_policy"
    if on_policy:
        if (cls.collector_classes[0] is not OnPolicyCollector
                or cls.env_actions is not Agent.env_actions):
            return None
        policy = None if central else host_policy_shape(agent)
        if not central and policy is None:
            return None
        acting = dict(layout=agent.layout.numpy(), masked=agent.masked, policy=policy)
    else:
        acting = agent.runner_acting(central)  # (rl_sever.offpolicy.host_acting)
        if acting is None:
            return None
        acting["run_envs"] = cfg.n_envs
    plans = []
    for i in range(cfg.runners):
        share = runner_config(cfg, i, cfg.runners)
        plans.append(RunnerPlan(agent.env_id, {k: getattr(share, k) for k in ENV_SETTINGS},
                                share.seed, share.check_finite, agent.action, on_policy,
                                n_steps=getattr(share, "n_steps", 0), **acting))
    return plans


def host_policy_shape(agent):
    """The on-policy NumPy policy's shape, or None where the host policy cannot act."""
    mode = agent.config.host_act
    if mode == "off" or host_act_reason(agent.model, mode) is not None:
        return None
    return policy_shape(agent.model)


def _init_error(message: str) -> Exception:
    """The error a runner's __init__ raised, from Ray's report of it (its last line)."""
    last = [line for line in message.strip().splitlines() if line.strip()][-1].strip()
    kind, _, text = last.partition(": ")
    if not kind.startswith(("envs.errors.", "rl_sever.errors.")):  # not one of ours: as is
        return ClusterError(f"an env runner could not start: {last}")
    if "unknown environment id" in text:  # registered in the learner's process only
        text += ("; a runner registers a user's env by importing its module: name the env "
                 "'my_package.envs:MyEnv-v0' and install my_package where the runners run")
    return ConfigError(f"an env runner could not start: {text}")
