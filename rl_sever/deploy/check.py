"""Does an exported policy act as the agent does, and how fast does its runtime answer?

The check's observations: half drawn from the env's observation space (any value the space
allows, beyond what training saw; all of them for an agent built on a user's env instance),
half from the agent's own greedy rollouts on seeded envs
(with their action masks, and a recurrent policy's state carried from step to step). On each,
`agent.predict` gives the reference; every format must give the same discrete actions, and
continuous actions and states within TOLERANCE. Quantised formats are measured, not held to it.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from typing import Any

import numpy as np
import tensorflow as tf

from envs import make_vec_env
from rl_sever.core.action_masks import MaskReader
from rl_sever.core.compiled import per_agent
from rl_sever.core.export import raw_observation_space
from rl_sever.core.policy_inputs import act_inputs
from rl_sever.errors import ExportError

TOLERANCE = 1e-4
"""Continuous outputs: |exported - agent.predict| <= TOLERANCE * (1 + |agent.predict|)."""
ENVS = 8


@dataclasses.dataclass
class Observations:
    """The check's inputs (named as the exported signature names them, one batch per env
    step) and agent.predict's outputs on them."""

    feeds: list[dict[str, np.ndarray]]
    reference: list[dict[str, np.ndarray]]
    origin: list[str]

    @property
    def count(self) -> int:
        return sum(len(r["action"]) for r in self.reference)


def draw(agent: Any, specs: list[Any], n: int, seed: int = 12_345,
         stochastic: bool = False) -> Observations:
    """`n` observations (half from the observation space, half from greedy rollouts); with
    `stochastic`, the references hold the distribution's parameters too."""
    drawn = Observations([], [], [])
    k = max(1, min(ENVS, n // 2 or 1))
    dtypes = {s.name: s.dtype.as_numpy_dtype for s in specs}
    record = _recorder(agent, dtypes, drawn, stochastic)
    space = copy.deepcopy(raw_observation_space(agent))  # seeded here, not the agent's own
    space.seed(seed)
    ones = np.ones(k, bool)
    full_mask = np.ones((k, agent.layout.mask_dim), bool) if agent.masked else None
    # A user's env instance (env_id "custom") cannot be made again: its space gives them all.
    from_space = n if agent.env_id == "custom" else n // 2
    while drawn.count < from_space:
        samples = [space.sample() for _ in range(k)]
        obs = ({key: np.stack([s[key] for s in samples]) for key in samples[0]}
               if isinstance(samples[0], dict) else np.stack(samples))
        record(obs, None, ones, full_mask, "a sample of the observation space")
    if drawn.count >= n:
        return drawn
    atari = getattr(agent.config, "atari", None)
    env = make_vec_env(agent.env_id, k, seed=seed, atari=atari, training=False)
    try:
        masks = MaskReader(env, k, agent.layout.mask_dim) if agent.masked else None
        obs, info = env.reset(seed=seed)
        state, starts = None, ones
        while drawn.count < n:
            out = record(obs, state, starts, None if masks is None else masks(info),
                         "a step of a greedy rollout")
            state = out.get("next_state")
            obs, _, terminated, truncated, info = env.step(out["action"])
            starts = np.logical_or(terminated, truncated)
    finally:
        env.close()
    return drawn



def _recorder(agent: Any, dtypes: dict[str, Any], drawn: Observations, stochastic: bool):
    state_dim = agent.layout.state_dim
    # Traced once per check: one recorder per draw, so per_agent (no retracing warning when a
    # process checks several exports).
    distribution = (per_agent(tf.function(lambda *a: agent.policy_distribution(*a)[1]))
                    if stochastic else None)

    def record(obs, state, starts, mask, origin: str) -> dict[str, np.ndarray]:
        n = len(starts)
        feeds = ({f"observation_{key}": np.asarray(v) for key, v in obs.items()}
                 if isinstance(obs, dict) else {"observation": np.asarray(obs)})
        kwargs = {} if mask is None else {"action_masks": mask}
        if state_dim:
            state = np.zeros((n, state_dim), np.float32) if state is None else state
            action, next_state = agent.predict(obs, state, starts, True, **kwargs)
            feeds.update(state=state, episode_start=np.asarray(starts, bool))
            out = {"action": np.asarray(action), "next_state": np.asarray(next_state)}
        else:
            out = {"action": np.asarray(agent.predict(obs, deterministic=True, **kwargs))}
        if mask is not None:
            feeds["action_mask"] = np.asarray(mask, bool)
        if distribution is not None:  # the parameters, from the act step's own inputs
            args, _ = act_inputs(agent, obs, state, starts if state_dim else None, mask)
            out.update({k: v.numpy() for k, v in distribution(*args).items()})
        drawn.feeds.append({name: np.asarray(v, dtypes[name]) for name, v in feeds.items()})
        drawn.reference.append(out)
        drawn.origin.append(origin)
        return out

    return record


def compare(runtime, drawn: Observations, action: Any) -> dict[str, Any]:
    """How far `runtime` is from agent.predict: mismatched discrete actions, the largest
    continuous error relative to TOLERANCE, and the worst observation; sampled actions (a
    stochastic export) must lie in the action space and respect the masks."""
    mismatched, worst, where, invalid = 0, 0.0, None, 0
    discrete = action.kind != "box"
    for step, (feeds, reference) in enumerate(zip(drawn.feeds, drawn.reference)):
        got = runtime(feeds)
        if "sampled_action" in got:
            invalid += _invalid_samples(np.asarray(got["sampled_action"]), feeds, action)
        for name, ref in reference.items():
            value = np.asarray(got[name]).reshape(ref.shape)
            if name == "action" and discrete:
                bad = (value != ref).reshape(len(ref), -1).any(axis=1)
                if bad.any() and not mismatched:  # the first mismatch is the one reported
                    row = int(np.flatnonzero(bad)[0])
                    where = (step, row, name, value[row], ref[row])
                mismatched += int(bad.sum())
                continue
            error = (np.abs(value.astype(np.float64) - ref) / (1 + np.abs(ref))).reshape(len(ref), -1)
            row = int(np.argmax(error.max(axis=1)))
            if error[row].max() > worst:
                worst = float(error[row].max())
                if not mismatched:
                    where = (step, row, name, value[row], ref[row])
    result = {"observations": drawn.count, "max_error": worst, "mismatched_actions": mismatched}
    if invalid:
        result["invalid_samples"] = invalid
    if where is not None:
        step, row, name, value, ref = where
        result["worst"] = {"observation": int(sum(len(r["action"]) for r in drawn.reference[:step]) + row),
                           "origin": drawn.origin[step], "output": name,
                           "exported": np.asarray(value).tolist(), "agent": np.asarray(ref).tolist()}
    result["passed"] = mismatched == 0 and worst <= TOLERANCE and not invalid
    return result


def _invalid_samples(sampled: np.ndarray, feeds: dict[str, np.ndarray], action: Any) -> int:
    """Sampled actions outside the bounds, the choices, or the masks."""
    n = len(sampled)
    if action.kind == "box":
        return int((~((sampled >= action.low) & (sampled <= action.high))).reshape(n, -1).any(1).sum())
    sampled = sampled.reshape(n, -1).astype(np.int64)
    sizes = [action.n] if action.kind == "discrete" else list(action.nvec)
    bad = ((sampled < 0) | (sampled >= np.asarray(sizes))).any(1)
    mask = feeds.get("action_mask")
    if mask is not None:
        offsets = np.cumsum([0, *sizes[:-1]])
        picked = np.clip(sampled, 0, np.asarray(sizes) - 1) + offsets
        bad |= ~np.take_along_axis(mask, picked, axis=1).all(1)
    return int(bad.sum())


def failure(fmt: str, result: dict[str, Any]) -> ExportError:
    """The one line a failed check ends with."""
    w = result.get("worst")
    what = (f"{result['mismatched_actions']} of {result['observations']} greedy actions differ"
            if result["mismatched_actions"] else
            f"{result['invalid_samples']} sampled actions outside the action space or mask"
            if result.get("invalid_samples") else
            f"error {result['max_error']:.3g} > tolerance {TOLERANCE:g}")
    worst = "" if w is None else (
        f"; worst: observation {w['observation']} ({w['origin']}), {w['output']} "
        f"{_short(w['exported'])} against {_short(w['agent'])}")
    return ExportError(f"{fmt} does not reproduce agent.predict: {what}{worst}")


def _short(x: Any) -> str:
    text = np.array2string(np.asarray(x), precision=5, threshold=8)
    return text if len(text) < 80 else text[:77] + "..."


def latency(runtime, drawn: Observations, batch: int = 64) -> dict[str, float]:
    """Median milliseconds of one call on one observation, and on a batch of `batch`."""
    first = drawn.feeds[-1]
    rows = {name: np.concatenate([f[name] for f in drawn.feeds])
            for name in first}
    total = len(next(iter(rows.values())))
    take = np.arange(batch) % total
    out = {}
    for label, feeds, calls in (("1", {k: v[:1] for k, v in rows.items()}, 200),
                                (str(batch), {k: v[take] for k, v in rows.items()}, 50)):
        for _ in range(5):
            runtime(feeds)
        times = []
        for _ in range(calls):
            t0 = time.perf_counter()
            runtime(feeds)
            times.append(time.perf_counter() - t0)
        out[f"ms_{label}"] = round(1e3 * float(np.median(times)), 4)
    return out


def calibration(drawn: Observations, batches: int = 100) -> list[dict[str, np.ndarray]]:
    """int8 calibration inputs (named, as the signature names them): rollouts first."""
    order = [i for i, o in enumerate(drawn.origin) if "rollout" in o] + \
            [i for i, o in enumerate(drawn.origin) if "rollout" not in o]
    return [drawn.feeds[i] for i in order[:batches]]
