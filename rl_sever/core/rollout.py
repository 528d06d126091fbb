"""The rollout step, written once (`env_step`): step the env, recover the true final
observation where an episode ended (SAME_STEP autoreset), hand one `Step` record to a store
(the rollout buffer, the replay buffers, a recorder of TensorArray rows). The record carries
the behaviour policy's log-probability and value where the policy gives them, so an
importance-weighted or bootstrapping algorithm reads them instead of recomputing them.

Two drivers iterate it: the collectors' Python loops over Gymnasium vector envs (through
GymnasiumStepper) and core.ingraph_env.drive's tf.while_loop over TF-native envs (calling a
Gymnasium env from a compiled loop through tf.numpy_function costs more per step than a
compiled act call plus a Python step).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from envs.autoreset import reached_observations
from rl_sever.core.batch import Action, Bool, Float, Layout, Mask, Obs, State, typed_batch


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
    action_mask: Mask = ()  # the actions `obs` allowed (an env that gives masks)
    state: State = ()  # a recurrent policy's state when it acted on `obs`


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
    action_mask: Mask = ()
    state: State = ()

    @classmethod
    def row(cls, step: Step) -> Rollout:
        """The Rollout row of one step."""
        return cls(step.obs, step.actions, step.rewards, step.terminated,
                   step.terminated | step.truncated, step.next_obs, step.log_prob, step.value,
                   step.action_mask, step.state)


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
            if isinstance(array, dict):  # a Dict observation: one array per key
                for key, part in array.items():
                    part[self.pos] = value[key]
            elif not isinstance(value, tuple):  # an absent field (): filled by the collector
                array[self.pos] = value
        self.pos += 1

    @property
    def full(self) -> bool:
        return self.pos == self.n_steps

    def reset(self) -> None:
        self.pos = 0

    def arrays(self) -> Rollout:
        return self.data


class GymnasiumStepper:
    """A Gymnasium vector env behind the TF-native envs' `step_autoreset(state, actions)`, so
    one `env_step` serves both: the state is the env step count (for the messages of `guard`,
    a rl_sever.core.finite.FiniteGuard checking what crosses the env boundary). With `masks`
    (a rl_sever.core.action_masks.MaskReader), `mask` holds the action masks of the current
    observations after each step."""

    def __init__(self, env, guard=None, masks=None):
        self.env, self.guard, self.masks = env, guard, masks
        self.mask = None

    def reset(self, seed: int, step: int = 0):
        """Reset the env with `seed` (at env step `step`); returns the first observations (and
        reads their masks)."""
        obs, info = self.env.reset(seed=seed)
        self.check("observation", obs, step)
        if self.masks is not None:
            self.mask = self.masks(info)
        return obs

    def check(self, what: str, values, step: int) -> None:
        if self.guard is not None:
            self.guard.check(what, values, step)

    def step_autoreset(self, step: int, env_actions: np.ndarray):
        self.check("action", env_actions, step)
        next_obs, reward, terminated, truncated, info = self.env.step(env_actions)
        # `reached` is the true last obs where an episode ended (truncation bootstraps from it);
        # `next_obs` already starts the next episode there.
        reached = reached_observations(next_obs, info)
        if self.masks is not None:  # the masks of next_obs (a new episode's where one ended)
            self.mask = self.masks(info)
        self.check("reward", reward, step)
        self.check("observation", next_obs, step)
        if reached is not next_obs:  # an episode ended: its true last observation too
            self.check("final observation", reached, step)
        return step, next_obs, reward, terminated, truncated, reached


def env_step(env, env_state, obs, actions, env_actions, store=None, **behaviour):
    """The rollout step, for both drivers: step `env` (a TF-native env, or a Gymnasium one
    through GymnasiumStepper) from `env_state` with `env_actions` (the policy's `actions` in env
    units) and hand the Step, with the policy's own actions and `behaviour` (log_prob, value),
    to `store`. Returns (env state, next observation, the Step)."""
    env_state, next_obs, reward, terminated, truncated, reached = env.step_autoreset(env_state,
                                                                                    env_actions)
    record = Step(obs, actions, reward, terminated, truncated, reached, **behaviour)
    if store is not None:
        store.add(record)
    return env_state, next_obs, record
