"""The rollout step, written once: act, step the env, recover the true final observation where
an episode ended (SAME_STEP autoreset), count episodes, hand one `Step` record to a store (the
rollout buffer, the replay buffers, a recorder of TensorArray rows). The record carries the
behaviour policy's log-probability and value where the policy gives them, so an
importance-weighted or bootstrapping algorithm reads them instead of recomputing them.

`python_step` is driven by the collectors' Python loops over Gymnasium vector envs,
`graph_step` by core.ingraph_env.drive's tf.while_loop over TF-native envs (calling a
Gymnasium env from a compiled loop through tf.numpy_function costs more per step than a
compiled act call plus a Python step, so the drivers stay two).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import tensorflow as tf

from envs.autoreset import reached_observations
from rl_sever.core.batch import Action, Bool, Float, Layout, Obs, typed_batch


@typed_batch
class Step(NamedTuple):
    """One vector-env step, as a store receives it ([n_envs, ...]). `next_obs` is the
    observation actually reached (the true final one where an episode ended)."""

    obs: Obs
    actions: Action
    rewards: Float
    terminated: Bool
    truncated: Bool
    next_obs: Obs
    log_prob: Float = ()
    value: Float = ()


@typed_batch
class Rollout(NamedTuple):
    """One on-policy rollout, time-major [n_steps, n_envs, ...]: the steps stacked, with `dones`
    (terminated or truncated) in place of `truncated`. From the collector (NumPy) or the
    in-graph rollout (tensors) to the compiled update, which takes its fields in this order."""

    obs: Obs
    actions: Action
    rewards: Float
    terminated: Bool
    dones: Bool
    next_obs: Obs
    log_prob: Float
    value: Float

    @classmethod
    def row(cls, step: Step) -> Rollout:
        """The Rollout row of one step."""
        return cls(step.obs, step.actions, step.rewards, step.terminated,
                   step.terminated | step.truncated, step.next_obs, step.log_prob, step.value)


class RolloutBuffer:
    """The Steps of one on-policy rollout, preallocated time-major [n_steps, n_envs, ...]: one
    array per Rollout field, typed from its declaration."""

    def __init__(self, n_steps: int, n_envs: int, layout: Layout):
        self.n_steps, self.n_envs, self.pos = n_steps, n_envs, 0
        self.data = Rollout.zeros(layout, (n_steps, n_envs))

    def add(self, step: Step) -> None:
        if self.pos >= self.n_steps:
            raise IndexError("rollout buffer is full; call reset() after the update")
        for array, value in zip(self.data, Rollout.row(step)):
            array[self.pos] = value
        self.pos += 1

    @property
    def full(self) -> bool:
        return self.pos == self.n_steps

    def reset(self) -> None:
        self.pos = 0

    def arrays(self) -> Rollout:
        return self.data


def python_step(env, obs: np.ndarray, actions: np.ndarray, env_actions: np.ndarray, store,
                guard=None, step: int = 0, **behaviour) -> np.ndarray:
    """Step a Gymnasium vector env with `env_actions` (the policy's `actions` in env units),
    store the Step with the policy's own actions and `behaviour` (log_prob, value), return the
    next observation. `guard` (rl_sever.core.finite.FiniteGuard) checks what crosses the env
    boundary at env `step`."""
    if guard is not None:
        guard.check("action", env_actions, step)
    next_obs, reward, terminated, truncated, info = env.step(env_actions)
    # `reached` is the true last obs where an episode ended (truncation bootstraps from it);
    # `next_obs` already starts the next episode there.
    reached = reached_observations(next_obs, info)
    if guard is not None:
        guard.check("reward", reward, step)
        guard.check("observation", next_obs, step)
        if reached is not next_obs:  # an episode ended: its true last observation too
            guard.check("final observation", reached, step)
    store.add(Step(obs, actions, reward, terminated, truncated, reached, **behaviour))
    return next_obs


class GraphStep(NamedTuple):
    """One in-graph vector step: the env state after it, the stored Step, the episode counters."""

    state: object
    next_obs: tf.Tensor
    record: Step
    done: tf.Tensor
    ep_return: tf.Tensor
    ep_length: tf.Tensor
    ended_return: tf.Tensor
    """Return of each episode that ended at this step (0 elsewhere), float64 like EpisodeStats."""
    ended_length: tf.Tensor


def graph_step(env, state, obs, actions, env_actions, ep_return, ep_length, store=None,
               **behaviour) -> GraphStep:
    """`python_step` for a TF-native env inside a compiled loop, plus the per-env running
    episode return and length (what EpisodeStats counts on the Gymnasium path)."""
    state, next_obs, reward, terminated, truncated, reached = env.step_autoreset(state, env_actions)
    record = Step(obs, actions, reward, terminated, truncated, reached, **behaviour)
    if store is not None:
        store.add(record)
    done = terminated | truncated
    ep_return = ep_return + tf.cast(reward, tf.float64)
    ep_length = ep_length + 1
    ended_return, ended_length = tf.where(done, ep_return, 0.0), tf.where(done, ep_length, 0)
    return GraphStep(state, next_obs, record, done,
                     tf.where(done, tf.zeros_like(ep_return), ep_return),
                     tf.where(done, tf.zeros_like(ep_length), ep_length), ended_return, ended_length)
