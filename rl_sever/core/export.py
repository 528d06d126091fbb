"""Export a trained agent's greedy policy as a self-contained TensorFlow SavedModel.

The SavedModel maps raw observations to the actions `agent.predict` returns: observation
normalisation, the policy network, the distribution's mode and clipping to the Box bounds
all live in the graph. Loading it needs only TensorFlow (no rl_sever, agents or envs):

    policy = tf.saved_model.load(path)
    action = policy.signatures["serving_default"](observation=obs)["action"]

A `metadata.json` next to it records the env id, the algorithm and both spaces.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from envs.running_stats import mirror_of
from rl_sever import __version__
from rl_sever.errors import ConfigError

METADATA_FILE = "metadata.json"
SIGNATURE = "serving_default"


class ExportedPolicy(tf.Module):
    """The graph that is saved: raw observation -> greedy action."""

    def __init__(self, agent: Any, *, float64: bool = True, stochastic: bool = False):
        super().__init__(name="policy")
        # float64 normalisation gives agent.predict's bits; LiteRT has no float64 kernels, so
        # its graph normalises in float32 (within a few float32 ulps of the float64 result).
        self._stats_dtype = tf.float64 if float64 else tf.float32
        normalizer = agent.normalizer
        raw_space = raw_observation_space(agent)
        self._greedy = agent.greedy_fn
        self._obs_dtype = agent.obs_dtype
        # Track exactly the variables the greedy step reads (not optimizer slots), so any
        # registered agent exports the same way whatever its attribute names.
        self.policy_variables = list(agent.greedy_fn.get_concrete_function().variables)
        self._distribution = None
        if stochastic:  # also the distribution's parameters and an action sampled from it
            if not hasattr(agent, "policy_distribution"):
                raise ConfigError(f"{agent.algo}'s policy is deterministic (its exploration noise "
                                  "is not part of the policy): export it without --stochastic")
            self._distribution = agent.policy_distribution
            params = tf.function(lambda *a: agent.policy_distribution(*a)[1], autograph=False)
            seen = {id(v) for v in self.policy_variables}
            self.policy_variables += [v for v in params.get_concrete_function(
                *agent.greedy_fn.input_signature).variables if id(v) not in seen]
            self._nvec = list(getattr(agent.action, "nvec", None) or [])
            self._to_env = getattr(agent, "_to_env", None)
        self._rms = self._stats = None
        if normalizer is not None and normalizer.obs_rms is not None:
            # The NumPy statistics are the live ones; the (float64) variables get their values.
            normalizer.before_save()
            self._stats = normalizer.obs_rms  # a Dict observation's: key -> statistics
            # Their variables' modules, tracked at `_rms` (the SavedModel's paths to them).
            self._rms = mirror_of(self._stats)
            self._clip, self._eps = normalizer.clip_obs, normalizer.epsilon
            self.obs_statistics = [v for rms in (self._stats.values()
                                                 if isinstance(self._stats, dict)
                                                 else [self._stats])
                                   for v in (rms.mean_variable, rms.var_variable)]
        self._low = self._high = None
        if agent.action.kind == "box":
            # NumPy, made constants in the trace (a captured eager tensor would become an
            # input of the ONNX graph).
            self._low = np.asarray(agent.action.low, np.float32)
            self._high = np.asarray(agent.action.high, np.float32)
        self._state_dim = agent.layout.state_dim
        # A Dict observation: one input per key, observation_<key> (signatures take flat inputs).
        self._keys = list(agent.obs_shape) if isinstance(agent.obs_shape, dict) else None
        if self._keys is None:
            spec = [tf.TensorSpec([None, *agent.obs_shape], tf.as_dtype(raw_space.dtype),
                                  name="observation")]
        else:
            spec = [tf.TensorSpec([None, *agent.obs_shape[k]], agent.obs_dtype[k],
                                  name=f"observation_{k}") for k in self._keys]
        if self._state_dim:  # a recurrent policy takes its state and returns the next one
            spec += [tf.TensorSpec([None, self._state_dim], tf.float32, name="state"),
                     tf.TensorSpec([None], tf.bool, name="episode_start")]
        if getattr(agent, "masked", False):  # the allowed actions of each observation
            spec.append(tf.TensorSpec([None, agent.layout.mask_dim], tf.bool, name="action_mask"))
        self.serve = tf.function(self._serve, input_signature=spec)

    def _serve(self, observation: tf.Tensor, *extra: tf.Tensor) -> dict[str, tf.Tensor]:
        if self._keys is not None:  # the Dict observation's keys, then the other inputs
            parts = [observation, *extra[:len(self._keys) - 1]]
            extra = extra[len(self._keys) - 1:]
            rms = self._stats or {}
            # float64 statistics per vector key, as agent.predict normalises them.
            parts = [rms[k].normalize_tf(v, self._clip, self._eps, dtype=self._stats_dtype)
                     if k in rms else v for k, v in zip(self._keys, parts)]
            return self._act({k: tf.cast(v, self._obs_dtype[k])
                              for k, v in zip(self._keys, parts)}, extra)
        x = observation
        if self._stats is not None:
            # float64, like the NumPy path of agent.predict, so both give identical bits.
            x = self._stats.normalize_tf(x, self._clip, self._eps, dtype=self._stats_dtype)
        return self._act(tf.cast(x, self._obs_dtype), extra)

    def _act(self, x, extra) -> dict[str, tf.Tensor]:
        out = {}
        if self._state_dim:  # the state zeroed where an episode starts
            state, start, *extra = extra
            extra = [tf.where(start[:, None], tf.zeros_like(state), state), *extra]
        action = self._greedy(x, *extra)
        if self._state_dim:
            action, out["next_state"] = action  # ONNX: an output cannot share an input's name
        if self._low is not None:
            action = tf.clip_by_value(action, self._low, self._high)
        if self._distribution is not None:
            kind, params, _ = self._distribution(x, *extra)
            out.update(params, sampled_action=self._sample(kind, params))
        return {"action": action, **out}

    def _sample(self, kind: str, params: dict[str, tf.Tensor]) -> tf.Tensor:
        """One action drawn with the runtime's own random generator (not reproducible)."""
        if kind in ("categorical", "multicategorical"):
            parts = (tf.split(params["logits"], self._nvec, axis=-1) if kind == "multicategorical"
                     else [params["logits"]])
            drawn = [tf.random.categorical(p, 1, dtype=tf.int32)[:, 0] for p in parts]
            return drawn[0] if kind == "categorical" else tf.stack(drawn, axis=-1)
        mean = params["mean"]
        action = mean + tf.exp(params["log_std"]) * tf.random.normal(tf.shape(mean))
        if kind == "squashed_gaussian":  # tanh into [-1, 1], then the action bounds
            action = self._to_env(tf.tanh(action))
        return tf.clip_by_value(action, self._low, self._high)


def raw_observation_space(agent: Any):
    """The observation space as the env gives it (before the agent's normalisation)."""
    normalizer = agent.normalizer
    return (normalizer.env if normalizer is not None else agent.env).single_observation_space


def _jsonable(x: Any) -> Any:
    """Nested lists with non-finite bounds as "inf"/"-inf" (strict JSON has no Infinity)."""
    if isinstance(x, list):
        return [_jsonable(v) for v in x]
    if isinstance(x, float) and not np.isfinite(x):
        return str(x)
    return x


def _space_record(space: Any) -> dict[str, Any]:
    record: dict[str, Any] = {"type": type(space).__name__, "shape": list(space.shape or ())}
    record["dtype"] = str(np.dtype(space.dtype)) if space.dtype is not None else None
    for name in ("n", "start", "nvec"):
        if hasattr(space, name):
            record[name] = np.asarray(getattr(space, name)).tolist()
    if hasattr(space, "low"):
        record["low"] = _jsonable(np.asarray(space.low).tolist())
        record["high"] = _jsonable(np.asarray(space.high).tolist())
    return record


def metadata(agent: Any) -> dict[str, Any]:
    """What a consumer of the SavedModel needs to know besides the graph itself."""
    normalizer = agent.normalizer
    return {"format": "rl_sever policy SavedModel", "rl_sever_version": __version__,
            "algo": agent.algo, "env_id": agent.env_id,
            "global_step": int(agent.global_step.numpy()),
            "signature": {"name": SIGNATURE, "output": "action",
                          "input": ("observation" if not isinstance(agent.obs_shape, dict)
                                    else [f"observation_{k}" for k in agent.obs_shape]),
                          **({"state": {"inputs": ["state", "episode_start"], "output": "next_state",
                                        "shape": [None, agent.layout.state_dim],
                                        "dtype": "float32", "initial": "zeros"}}
                             if agent.layout.state_dim else {}),
                          **({"action_mask": {"input": "action_mask", "dtype": "bool",
                                              "shape": [None, agent.layout.mask_dim]}}
                             if getattr(agent, "masked", False) else {})},
            "observation_space": _space_record(raw_observation_space(agent)),
            "action_space": _space_record(agent.env.single_action_space),
            "normalize_obs": bool(normalizer is not None and normalizer.obs_rms is not None),
            "deterministic": True}


def export_policy(agent: Any, out_dir: str | Path) -> Path:
    """Write the agent's greedy policy to `out_dir` (a SavedModel plus metadata.json)."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"export target {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not (out / "saved_model.pb").exists():
        raise ConfigError(f"export target {out} is a non-empty directory that holds no "
                          "SavedModel; choose a new or empty folder")
    out.mkdir(parents=True, exist_ok=True)
    policy = ExportedPolicy(agent)
    tf.saved_model.save(policy, str(out),
                        signatures={SIGNATURE: policy.serve.get_concrete_function()})
    (out / METADATA_FILE).write_text(json.dumps(metadata(agent), indent=2, allow_nan=False))
    return out
