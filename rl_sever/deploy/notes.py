"""What metadata.json tells the caller of an exported policy: its inputs and outputs, the
preprocessing the graph holds, and what the caller must still do before calling it."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from envs.atari import is_atari
from rl_sever.core.export import SIGNATURE, raw_observation_space


def _spec(name: str, shape: list, dtype: Any) -> dict[str, Any]:
    return {"name": name, "shape": [None, *[int(d) for d in shape]], "dtype": str(np.dtype(dtype))}


def signature(agent: Any, stochastic: bool = False) -> dict[str, Any]:
    """The inputs and outputs, in the order the exported function takes them."""
    space = raw_observation_space(agent)
    if isinstance(agent.obs_shape, dict):
        inputs = [_spec(f"observation_{k}", agent.obs_shape[k], space[k].dtype)
                  for k in agent.obs_shape]
    else:
        inputs = [_spec("observation", agent.obs_shape, space.dtype)]
    outputs = [_spec("action", agent.env.single_action_space.shape,
                     agent.action.dtype)]
    if agent.layout.state_dim:
        inputs += [_spec("state", [agent.layout.state_dim], "float32"),
                   _spec("episode_start", [], "bool")]
        outputs.append(_spec("next_state", [agent.layout.state_dim], "float32"))
    if agent.masked:
        inputs.append(_spec("action_mask", [agent.layout.mask_dim], "bool"))
    if stochastic:
        outputs += _stochastic_outputs(agent)
    return {"signature_name": SIGNATURE, "inputs": inputs, "outputs": outputs}


def _stochastic_outputs(agent: Any) -> list[dict[str, Any]]:
    """The distribution's parameters (as the policy computes them) and a sampled action."""
    action = agent.env.single_action_space
    kind = agent.action.kind
    if kind in ("discrete", "multidiscrete"):
        params = [{**_spec("logits", [agent.action.mask_dim], "float32"),
                   "means": "unnormalised log-probabilities (masked actions very negative)"}]
    else:
        squashed = agent.mode == "off_policy"
        where = "before tanh, in [-1, 1] units" if squashed else "in action units"
        params = [{**_spec("mean", action.shape, "float32"), "means": f"the Gaussian's mean, {where}"},
                  {**_spec("log_std", action.shape, "float32"), "means": "its log standard deviation"}]
    sampled = _spec("sampled_action", action.shape, agent.action.dtype)
    sampled["means"] = ("an action drawn by the runtime's random generator"
                        + (" (tanh-squashed, scaled to the bounds)" if kind == "box" and
                           agent.mode == "off_policy" else ""))
    return [*params, sampled]



def preprocessing(agent: Any) -> list[str]:
    """The preprocessing inside the graph, in the order it runs."""
    steps = []
    if isinstance(agent.obs_shape, dict):
        steps.append("a Dict observation arrives as one input per key (observation_<key>)")
    normalizer = agent.normalizer
    if normalizer is not None and normalizer.obs_rms is not None:
        steps.append(f"observation normalisation with the checkpointed running statistics: "
                     f"(x - mean) / sqrt(var + {normalizer.epsilon:g}), clipped to "
                     f"+-{normalizer.clip_obs:g} (float64; float32 in LiteRT)")
    dtypes = agent.obs_dtype.values() if isinstance(agent.obs_dtype, dict) else [agent.obs_dtype]
    if any(getattr(d, "name", str(d)) == "uint8" for d in dtypes):
        steps.append("uint8 images scaled to [0, 1] by the network")
    if agent.layout.state_dim:
        steps.append("the recurrent state zeroed where episode_start is true")
    if agent.masked:
        steps.append("actions outside action_mask get zero probability")
    steps.append("the greedy action (the distribution's mode)")
    if agent.action.kind == "box":
        steps.append("actions clipped to the action space's bounds")
    return steps


def caller_steps(agent: Any) -> list[str]:
    """What a caller must do that the graph cannot."""
    steps = ["batch the inputs: the first axis is the batch (one observation: a batch of 1)"]
    atari = getattr(agent.config, "atari", None)
    if atari is not None and is_atari(agent.env_id):
        a = dataclasses.asdict(atari)
        steps.append(
            f"Atari frames as the agent saw them: {a['frame_skip']} frames per action with the "
            f"last two max-pooled, grayscale {a['screen_size']}x{a['screen_size']}, the last "
            f"{a['frame_stack']} frames stacked on the last axis (uint8 "
            f"[{a['screen_size']}, {a['screen_size']}, {a['frame_stack']}]); frame stacking is "
            f"state the caller keeps (Gymnasium's AtariPreprocessing and FrameStackObservation "
            f"do it), FIRE after a reset in games that need it")
    if agent.layout.state_dim:
        steps.append("carry the returned state into the next call; zeros and episode_start "
                     "true at an episode's first step")
    if agent.masked:
        steps.append("pass the env's action mask (true: allowed) with every observation")
    return steps
