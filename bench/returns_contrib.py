"""sb3-contrib counterparts of rl_sever's recurrent and masked PPO for bench/returns.py
(`--sb3`), and the count of the actions a masked policy takes outside its masks in evaluation.

RecurrentPPO ("MlpLstmPolicy") stands in for PPO with network.recurrent: lstm, MaskablePPO
("MlpPolicy") for PPO trained with action masks; both take the PPO settings sb3_model resolves
from the rl_sever config (returns.sb3_model), plus the ones below.
"""

from __future__ import annotations

import numpy as np


def action_nvec(action) -> np.ndarray:
    """Choices per component of a Discrete / MultiDiscrete action (rl_sever's ActionSpec or a
    Gymnasium space): the layout of its masks, components concatenated."""
    n = getattr(action, "n", 0)
    return np.array([int(n)] if n else list(action.nvec), np.int64)


def outside_masks(actions, masks, nvec: np.ndarray) -> int:
    """How many of the rows' actions some component of which the row's mask forbids."""
    masks = np.asarray(masks, bool).reshape(-1, int(nvec.sum()))
    actions = np.asarray(actions, np.int64).reshape(len(masks), len(nvec))
    starts = np.concatenate([[0], np.cumsum(nvec)[:-1]])
    return int((~np.take_along_axis(masks, starts + actions, axis=1).all(axis=1)).sum())


class MaskAudit:
    """The agent, for evaluate(): its predict() also counts the actions outside the masks it was
    given (the eval env's, read by evaluate as in training)."""

    def __init__(self, agent, nvec: np.ndarray):
        self._agent, self._nvec, self.invalid = agent, nvec, 0

    def __getattr__(self, name: str):
        return getattr(self._agent, name)

    def predict(self, obs, *args, action_masks=None, **kwargs):
        out = self._agent.predict(obs, *args, action_masks=action_masks, **kwargs)
        if action_masks is not None:
            self.invalid += outside_masks(out[0] if isinstance(out, tuple) else out,
                                          action_masks, self._nvec)
        return out


def sb3_kind(algo: str, cfg, masked: bool) -> str:
    """Which SB3 algorithm matches rl_sever's `algo` with `cfg`: "plain" (SB3 itself),
    "recurrent" (sb3-contrib RecurrentPPO) or "masked" (sb3-contrib MaskablePPO); a ValueError
    for a combination neither library has."""
    recurrent = getattr(getattr(cfg, "network", None), "recurrent", "none")
    if recurrent == "none" and not masked:
        return "plain"
    if algo != "ppo":
        what = "action masks" if recurrent == "none" else "a recurrent policy"
        raise ValueError(f"--sb3: no SB3 / sb3-contrib {algo.upper()} with {what}")
    if recurrent != "none" and masked:
        raise ValueError("--sb3: sb3-contrib has no PPO with both an LSTM and action masks")
    if recurrent not in ("none", "lstm"):
        raise ValueError(f"--sb3: sb3-contrib's RecurrentPPO has an LSTM only, not {recurrent}")
    if recurrent != "none" and cfg.network.shared_encoder:
        raise ValueError("--sb3: a recurrent policy behind a shared encoder has no RecurrentPPO "
                         "counterpart here (MlpLstmPolicy: the LSTM reads the flat observation)")
    return "recurrent" if recurrent != "none" else "masked"


def contrib_ppo(kind: str, env, cfg, kw: dict):
    """sb3-contrib's RecurrentPPO ("recurrent") or MaskablePPO ("masked") with the PPO keywords
    `kw` sb3_model resolved from `cfg`, plus the settings they alone have."""
    from sb3_contrib import MaskablePPO, RecurrentPPO

    net = cfg.network
    policy_kwargs = dict(kw.pop("policy_kwargs"))
    # Both are None in every preset; rl_sever has them, so they go over as well.
    kw.update(clip_range_vf=cfg.clip_range_vf, target_kl=cfg.target_kl)
    if kind == "masked":
        policy_kwargs.pop("log_std_init", None)  # MaskableActorCriticPolicy has no such argument
        return MaskablePPO("MlpPolicy", env, policy_kwargs=policy_kwargs, **kw)
    # rl_sever: one LSTM (network.recurrent_size) on the flat observation, read by the policy and
    # the value MLPs (network.hidden_sizes each). RecurrentActorCriticPolicy: shared_lstm=True with
    # enable_critic_lstm=False is its one-LSTM layout (lstm_actor only; no lstm_critic, no
    # feed-forward critic stand-in; it asserts the two flags are not both True, and shared_lstm
    # needs the shared features extractor, its default). One difference remains: SB3 feeds the
    # value MLP the LSTM output detached (forward / predict_values / evaluate_actions), so only the
    # policy loss (and entropy) trains its LSTM, where rl_sever's network.encoder_grad_from (both)
    # lets the value loss train it too. The zoo's enable_critic_lstm=True (a second LSTM for the
    # critic) departs further from rl_sever. LSTM initialisation differs too (PyTorch's uniform
    # vs rl_sever's Glorot / orthogonal with forget bias 1), and the minibatches: RecurrentPPO
    # cuts batch_size steps at episode starts and pads, rl_sever unrolls bptt_length-step
    # sequences (0: gcd(n_steps, batch_size)) from the stored states.
    policy_kwargs.update(lstm_hidden_size=net.recurrent_size, n_lstm_layers=1,
                         net_arch=dict(pi=list(net.hidden_sizes), vf=list(net.hidden_sizes)),
                         shared_lstm=True, enable_critic_lstm=False)
    return RecurrentPPO("MlpLstmPolicy", env, policy_kwargs=policy_kwargs, **kw)


def evaluate_masked(model, eval_env, episodes: int) -> tuple[float, float, int]:
    """MaskablePPO's evaluation (masks from the eval env's action_masks(), deterministic):
    (mean, std of the episode returns, actions outside the masks)."""
    from sb3_contrib.common.maskable.evaluation import evaluate_policy

    nvec, invalid = action_nvec(eval_env.action_space), 0

    def count(local: dict, _globals: dict) -> None:  # called per sub-env and step
        nonlocal invalid
        i = local["i"]
        invalid += outside_masks(local["actions"][i], local["action_masks"][i], nvec)

    mean, std = evaluate_policy(model, eval_env, n_eval_episodes=episodes, deterministic=True,
                                use_masking=True, callback=count)
    return float(mean), float(std), invalid
