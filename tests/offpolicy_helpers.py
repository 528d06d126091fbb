"""Helpers for the off-policy tests: tiny SAC / TD3 agents with a pre-filled replay buffer."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import tensorflow as tf

TINY = {
    "learning_starts": 64,
    "batch_size": 16,
    "buffer_size": 5_000,
    "network.hidden_sizes": [16, 16],
    "network.encoder_sizes": [16],
    "auxiliary.hidden_sizes": [16],
    "auxiliary.latent_dim": 4,
    "eval_episodes": 0,
    "jit_compile": False,
    "steps_per_iteration": 32,
}


def tiny_config(algo: str, **overrides):
    from rl_sever.config import update
    from rl_sever.registry import get_agent_class

    values = {**TINY, **overrides}
    ordered = dict(sorted(values.items(), key=lambda kv: "." not in kv[0]))
    return update(get_agent_class(algo).config_cls(), ordered)


def tiny_agent(algo: str, env="Pendulum-v1", *, fill: int = 48, logdir=None, **overrides):
    """A tiny agent whose replay buffer holds `fill` random transitions (no update yet, as
    long as fill < learning_starts)."""
    from rl_sever.registry import get_agent_class

    agent = get_agent_class(algo)(env, tiny_config(algo, **overrides), logdir=logdir)
    if fill:
        agent.learn(fill, progress=False)
    return agent


def one_batch(agent) -> dict[str, tf.Tensor]:
    """One gradient step's batch (the first of a sampled update), as tensors."""
    return {k: tf.convert_to_tensor(v[0]) for k, v in agent.sample_batch().items()}


def gradients(agent, loss: str, mb) -> dict[str, list]:
    """Module -> gradients of `loss` w.r.t. every variable of the module (one explicit tape)."""
    from rl_sever.offpolicy_networks import tf_variables

    modules = {m: tf_variables(vs) for m, vs in agent.flow_modules().items()}
    flat = [v for vs in modules.values() for v in vs]
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(flat)
        value = agent.loss_terms(mb)[loss]
    grads = tape.gradient(value, flat)
    out, i = {}, 0
    for m, vs in modules.items():
        out[m] = grads[i : i + len(vs)]
        i += len(vs)
    return out


def none_or_zero(grads) -> bool:
    return all(g is None or not np.any(tf.convert_to_tensor(g).numpy()) for g in grads)


def flows(grads) -> bool:
    return any(g is not None and np.any(tf.convert_to_tensor(g).numpy()) for g in grads)


def snapshot(variables) -> list[np.ndarray]:
    return [np.array(v.numpy(), copy=True) for v in variables]


class CountdownEnv(gym.Env):
    """Box obs [t / 10, goal], Box action in [-2, 2]; terminates at t == 4 when goal > 0,
    else a TimeLimit of 6 steps truncates: both episode ends occur, and a final observation
    (t > 0) is told apart from a reset observation (t == 0)."""

    def __init__(self):
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.action_space = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)
        self.t, self.goal = 0, 1.0

    def _obs(self):
        return np.array([self.t / 10, self.goal], np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        self.goal = float(self.np_random.choice([-1.0, 1.0]))
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        return self._obs(), float(action[0]), self.goal > 0 and self.t == 4, False, {}


COUNTDOWN_ID = "RlSeverCountdown-v0"
if COUNTDOWN_ID not in gym.registry:
    gym.register(COUNTDOWN_ID, entry_point=CountdownEnv, max_episode_steps=6)
