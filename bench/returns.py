"""Returns at published budgets (issue 12): each case trains rl_sever with its shipped preset
(zoo values), then evaluates the deterministic policy over 20 episodes on fresh seeded envs,
next to the published reference (rl-baselines3-zoo benchmark.md, one agent, ~150k evaluation
steps). A case passes when its mean reaches the reference mean minus one reference std.

    python bench/returns.py [--cases ppo_cartpole sac_pendulum ...] [--seeds 0]
                            [--steps N] [--sb3 [--torch-threads N]] [--only-sb3]
                            [--out bench/results_returns.json]
                            [--md bench/results_returns.md] [--logdir bench/runs_returns]
                            [--plot bench/results_returns.png]

`--sb3` also trains Stable-Baselines3 (the `bench` extra; torch at one thread, or
`--torch-threads N`: two are SAC's fastest setting here) on the same
resolved settings, in the same invocation, and evaluates it the same way: MlpPolicy on the
vector cases; on Atari, CnnPolicy on SB3's own AtariWrapper and 4-frame stack (its evaluation
counts whole games at the raw score, through the Monitor below the wrappers, as ours does).
A recurrent policy (network.recurrent: lstm) runs as sb3-contrib's RecurrentPPO, an agent
trained with action masks as sb3-contrib's MaskablePPO (masks from the env's action_masks());
the table names them. Cases without a preset (CASE_CONFIG) get their settings here, on both
sides; masked cases also count the actions outside the masks during evaluation (0 expected).
On a goal env (a Dict observation: SB3's MultiInputPolicy, whose CombinedExtractor concatenates
the keys in the Dict's sorted order, the order rl_sever flattens them in), config `her` becomes
SB3's HerReplayBuffer with the same strategy and n_sampled_goal; envs that report
info["is_success"] get the success rate of the evaluation episodes on both sides.

`--steps` overrides every selected case's budget (for the cases whose published budget does not
fit a 2-core machine); the JSON records the budget run and the published one. Each case's run
folder (TensorBoard events, checkpoints) goes under --logdir, and the learning curves of all
cases are drawn into --plot (one panel per env; seeds of a case as mean ± std). Timing covers
learn() with its logging and checkpoints.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# sb3-contrib's counterparts of recurrent and masked PPO, and the count of masked actions.
from bench.returns_contrib import MaskAudit, action_nvec, contrib_ppo, evaluate_masked, sb3_kind  # noqa: E402

EVAL_EPISODES = 20

# (algo, env id, published budget, reference mean, reference std); zoo figures were measured
# on LunarLander-v2 and HalfCheetah-v3, whose v3 / v5 successors only fixed bugs.
CASES = {
    "ppo_cartpole": ("ppo", "CartPole-v1", 100_000, 500.0, 0.0),
    "ppo_acrobot": ("ppo", "Acrobot-v1", 1_000_000, -73.5, 18.2),
    "ppo_lunarlander": ("ppo", "LunarLander-v3", 1_000_000, 242.0, 32.0),
    "a2c_lunarlander": ("a2c", "LunarLander-v3", 200_000, 156.0, 80.0),
    "sac_pendulum": ("sac", "Pendulum-v1", 20_000, -157.0, 89.0),
    "td3_pendulum": ("td3", "Pendulum-v1", 20_000, -152.0, 90.0),
    "sac_halfcheetah": ("sac", "HalfCheetah-v5", 1_000_000, 9535.0, 0.0),
    "td3_halfcheetah": ("td3", "HalfCheetah-v5", 1_000_000, 9656.0, 0.0),
    # The zoo's table has no TQC Pendulum row (None: no reference to reach).
    "tqc_pendulum": ("tqc", "Pendulum-v1", 20_000, None, None),
    "tqc_halfcheetah": ("tqc", "HalfCheetah-v5", 1_000_000, 12089.9, 127.4),
    "crossq_pendulum": ("crossq", "Pendulum-v1", 20_000, None, None),
    "crossq_halfcheetah": ("crossq", "HalfCheetah-v5", 5_000_000, None, None),
    "ppo_breakout": ("ppo", "ALE/Breakout-v5", 10_000_000, 398.0, 33.0),
    "ppo_pong": ("ppo", "ALE/Pong-v5", 10_000_000, 21.0, 0.0),
    # Memory (presets ppo/CartPoleNoVel-v1, PendulumNoVel-v1: the zoo's RecurrentPPO values) and
    # action masks; no published figures for these.
    "ppo_lstm_cartpolenovel": ("ppo", "CartPoleNoVel-v1", 100_000, None, None),
    "ppo_lstm_pendulumnovel": ("ppo", "PendulumNoVel-v1", 100_000, None, None),
    "ppo_mask_invalidaction": ("ppo", "Masked/InvalidActionPenalty-v0", 100_000, None, None),
    # Hindsight experience replay on 15-bit flipping (envs/bit_flipping.py), and the same without
    # it, which the HER paper's bit flipping shows failing (a random walk almost never meets
    # its goal, so every reward is -1); the success rate is their measure.
    "sac_her_bitflip": ("sac", "BitFlippingContinuous-v0", 30_000, None, None),
    # The zoo's SAC + HER preset (rl_sever/config/presets/sac/FetchReach-v4.yaml); needs
    # gymnasium-robotics, and MuJoCo 3 (FetchReach-v4 fails on reset under MuJoCo 4.0.1).
    "sac_her_fetchreach": ("sac", "FetchReach-v4", 20_000, None, None),
    "sac_noher_bitflip": ("sac", "BitFlippingContinuous-v0", 30_000, None, None),
}
# Config layers of a case, on top of its preset (both sides get them). Masked/InvalidActionPenalty
# has no preset: the target action is in the observation, every step pays 1 for it, 0.1 for
# another allowed action (100 steps: at most 100), and an invalid action ends the episode at -100
# (never taken with the masks). Small PPO settings learn it well within the budget.
CASE_CONFIG: dict[str, dict] = {
    "ppo_mask_invalidaction": {"n_envs": 8, "n_steps": 128, "batch_size": 256, "n_epochs": 4,
                               "learning_rate": 3e-4, "gamma": 0.99, "gae_lambda": 0.95,
                               "ent_coef": 0.01, "clip_range": 0.2, "action_masks": "on"},
}
# BitFlippingContinuous-v0 has no preset: SB3's HER settings for its bit-flipping env (one env,
# 1000 random steps first, gamma 0.95, lr 1e-3, [64, 64] ReLU; tau, train_freq, gradient_steps
# and the learned entropy coefficient at the SAC defaults, the same on both sides).
BITFLIP = {"n_envs": 1, "learning_starts": 1000, "batch_size": 256, "gamma": 0.95,
           "learning_rate": 1e-3, "buffer_size": 1_000_000, "network": {"hidden_sizes": [64, 64]}}
CASE_IMPORTS = {"sac_her_fetchreach": "gymnasium_robotics"}
CASE_CONFIG["sac_her_bitflip"] = {**BITFLIP, "her": {"strategy": "future", "n_sampled_goal": 4}}
CASE_CONFIG["sac_noher_bitflip"] = {**BITFLIP, "her": {"strategy": "none"}}
FITS_HERE = ["ppo_cartpole", "ppo_acrobot", "ppo_lunarlander", "a2c_lunarlander",
             "sac_pendulum", "td3_pendulum"]


def resolved_config(algo: str, env_id: str, seed: int, steps: int, overrides: dict | None = None):
    from rl_sever.config import presets
    from rl_sever.core.registry import get_agent_class

    klass = get_agent_class(algo)
    layers = [presets.find(algo, env_id) or {}, overrides or {},
              {"seed": seed, "total_steps": steps, "eval_episodes": 0}]
    return klass, presets.resolve(klass.config_cls, layers)


def run_case(name: str, seed: int, steps: int | None, sb3: bool = False,
             logdir: str | None = None, torch_threads: int = 1, only_sb3: bool = False) -> dict:
    from rl_sever.core.evaluation import evaluate

    algo, env_id, budget, ref_mean, ref_std = CASES[name]
    if name in CASE_IMPORTS:  # a package that registers the env id (both sides use it)
        importlib.import_module(CASE_IMPORTS[name])
    steps = steps or budget
    klass, cfg = resolved_config(algo, env_id, seed, steps, CASE_CONFIG.get(name))
    if only_sb3:  # rl_sever's side trained elsewhere (`rl-sever train --seeds`, bench/seeds.py)
        return {"case": name, "algo": algo, "env_id": env_id, "seed": seed, "steps": steps,
                "sb3": run_sb3(algo, env_id, cfg, seed, steps, torch_threads)}
    agent = klass(env_id, cfg, logdir=logdir)
    masked = bool(getattr(agent, "masked", False))
    if sb3:  # before training: a setting SB3 has no counterpart for stops the case at once
        sb3_kind(algo, cfg, masked)
    t0 = time.perf_counter()
    agent.learn(steps, progress=False)
    wall = time.perf_counter() - t0
    audit = MaskAudit(agent, action_nvec(agent.action)) if masked else agent
    ev = evaluate(audit, EVAL_EPISODES, seed=seed + 10_000)
    agent.close()
    sb3_row = run_sb3(algo, env_id, cfg, seed, steps, torch_threads, masked) if sb3 else None
    threshold = None if ref_mean is None else ref_mean - ref_std
    return {"case": name, "algo": algo, "env_id": env_id, "seed": seed, "steps": steps,
            "published_budget": budget, "wall_time_s": round(wall, 1),
            "eval_mean": round(ev["mean_reward"], 2), "eval_std": round(ev["std_reward"], 2),
            "eval_episodes": ev["episodes"],
            "eval_success_rate": ev.get("success_rate"),  # None: the env reports no is_success
            "eval_invalid_actions": audit.invalid if masked else None,
            "config_overrides": CASE_CONFIG.get(name),
            "reference_mean": ref_mean, "reference_std": ref_std,
            "threshold": threshold, "full_budget": steps == budget,
            "reached": (bool(ev["mean_reward"] >= threshold)
                        if steps == budget and threshold is not None else None),
            "full_budget_time_estimate_s": round(wall * budget / steps, 0), "sb3": sb3_row,
            # In effect for the run (the first agent of the process fixes the thread pools).
            "intra_op_threads": agent.intra_op_threads,
            "matmul_precision": getattr(agent, "matmul_precision", None),
            "run_dir": None if agent.run_dir is None else str(agent.run_dir)}


def sb3_model(algo: str, env, cfg, seed: int, policy: str = "MlpPolicy", masked: bool = False):
    """An SB3 model with rl_sever's resolved settings `cfg` (the same values, SB3's names);
    `masked`: rl_sever trains with action masks (sb3-contrib MaskablePPO); a Dict observation
    takes MultiInputPolicy, and config `her` SB3's HerReplayBuffer."""
    import torch
    from gymnasium import spaces
    from stable_baselines3 import A2C, PPO, SAC, TD3, HerReplayBuffer

    net = cfg.network
    act = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU, "elu": torch.nn.ELU}[net.activation]
    lr = cfg.learning_rate
    lr = (lambda left: left * cfg.learning_rate) if cfg.lr_schedule == "linear" else lr
    common = dict(learning_rate=lr, gamma=cfg.gamma, seed=seed, device="cpu", verbose=0)
    if isinstance(env.observation_space, spaces.Dict):  # rl_sever flattens it; so does this
        policy = "MultiInputPolicy"
    if algo in ("ppo", "a2c"):
        policy_kwargs = dict(activation_fn=act, ortho_init=net.ortho_init)
        if policy != "CnnPolicy":  # CnnPolicy: linear heads on the shared Nature CNN, as here
            policy_kwargs.update(net_arch=list(net.hidden_sizes), log_std_init=net.log_std_init)
        kw = dict(common, n_steps=cfg.n_steps, gae_lambda=cfg.gae_lambda, ent_coef=cfg.ent_coef,
                  vf_coef=cfg.vf_coef, max_grad_norm=cfg.max_grad_norm,
                  normalize_advantage=cfg.normalize_advantage, policy_kwargs=policy_kwargs)
        if algo == "a2c":
            sb3_kind(algo, cfg, masked)  # a recurrent or masked A2C: an error
            policy_kwargs.update(optimizer_class=torch.optim.RMSprop,
                                 optimizer_kwargs=dict(alpha=0.99, eps=cfg.adam_eps))
            return A2C(policy, env, **kw)
        clip = cfg.clip_range
        clip = (lambda left: left * cfg.clip_range) if cfg.clip_schedule == "linear" else clip
        kind = sb3_kind(algo, cfg, masked)
        if kind != "plain":
            return contrib_ppo(kind, env, cfg, dict(kw, batch_size=cfg.batch_size,
                                                    n_epochs=cfg.n_epochs, clip_range=clip))
        return PPO(policy, env, batch_size=cfg.batch_size, n_epochs=cfg.n_epochs,
                   clip_range=clip, **kw)
    kw = dict(common, buffer_size=cfg.buffer_size, learning_starts=cfg.learning_starts,
              batch_size=cfg.batch_size, tau=cfg.tau, train_freq=cfg.train_freq,
              gradient_steps=cfg.gradient_steps,
              policy_kwargs=dict(net_arch=list(net.hidden_sizes), activation_fn=act))
    if cfg.her.strategy != "none":  # future / final / episode: SB3's goal_selection_strategy too
        kw.update(replay_buffer_class=HerReplayBuffer,
                  replay_buffer_kwargs=dict(n_sampled_goal=cfg.her.n_sampled_goal,
                                            goal_selection_strategy=cfg.her.strategy))
    if algo == "sac":
        return SAC(policy, env, **kw)
    if algo == "tqc":
        from sb3_contrib import TQC

        kw["policy_kwargs"].update(n_critics=cfg.n_critics, n_quantiles=cfg.n_quantiles)
        return TQC(policy, env, top_quantiles_to_drop_per_net=cfg.top_quantiles_to_drop_per_net,
                   **kw)
    if algo == "crossq":
        from sb3_contrib import CrossQ

        kw.pop("tau")  # no target networks
        kw["policy_kwargs"].update(net_arch=dict(pi=list(net.hidden_sizes),
                                                 qf=list(cfg.critic_hidden_sizes)),
                                   batch_norm_momentum=cfg.batch_norm_momentum,
                                   batch_norm_eps=cfg.batch_norm_eps,
                                   renorm_warmup_steps=cfg.renorm_warmup_steps)
        return CrossQ(policy, env, policy_delay=cfg.policy_delay, **kw)  # no MultiInputPolicy
    from stable_baselines3.common.noise import NormalActionNoise

    dim = env.action_space.shape[0]
    noise = NormalActionNoise(np.zeros(dim), cfg.action_noise * np.ones(dim))
    return TD3(policy, env, action_noise=noise, policy_delay=cfg.policy_delay,
               target_policy_noise=cfg.target_policy_noise,
               target_noise_clip=cfg.target_noise_clip, **kw)


# render_mode None, as rl_sever makes its envs: SB3's make_vec_env asks for rgb_array by
# default, which envs that do not render (Masked/*) refuse.
NO_RENDER = {"render_mode": None}


def sb3_train_env(env_id: str, cfg, seed: int):
    """SB3's vector env for training on `cfg` (n_envs; VecNormalize as the config normalises)."""
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    env = make_vec_env(env_id, n_envs=cfg.n_envs, seed=seed, env_kwargs=NO_RENDER)
    if getattr(cfg, "normalize_obs", False) or getattr(cfg, "normalize_reward", False):
        env = VecNormalize(env, norm_obs=cfg.normalize_obs, norm_reward=cfg.normalize_reward,
                           gamma=cfg.gamma)
    return env


def sb3_eval_env(env_id: str, seed: int, train_env):
    """One env seeded `seed + 10_000`, normalised with the training env's statistics."""
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    eval_env = make_vec_env(env_id, n_envs=1, seed=seed + 10_000, env_kwargs=NO_RENDER)
    if isinstance(train_env, VecNormalize):
        eval_env = VecNormalize(eval_env, training=False, norm_reward=False)
        eval_env.obs_rms = train_env.obs_rms
    return eval_env


def run_sb3(algo: str, env_id: str, cfg, seed: int, steps: int, threads: int = 1,
            masked: bool = False) -> dict:
    import torch

    import envs.bit_flipping  # noqa: F401  (registers BitFlipping-v0, BitFlippingContinuous-v0)
    import envs.masked  # noqa: F401  (registers Masked/*, NoVel/* and the *NoVel aliases)
    import envs.partial  # noqa: F401
    from envs.atari import is_atari

    # One thread: its fastest setting on a 2-core machine for the small networks; SAC's
    # 256-wide networks run faster with two (Pendulum: 125 vs 101 steps/s): --torch-threads 2.
    torch.set_num_threads(threads)
    if is_atari(env_id):
        return run_sb3_atari(algo, env_id, cfg, seed, steps)
    env = sb3_train_env(env_id, cfg, seed)
    model = sb3_model(algo, env, cfg, seed, masked=masked)
    t0 = time.perf_counter()
    model.learn(steps)
    wall = time.perf_counter() - t0
    eval_env = sb3_eval_env(env_id, seed, env)
    invalid, success = None, None
    if masked:  # MaskablePPO acts on the eval env's action_masks() (use_masking)
        mean, std, invalid = evaluate_masked(model, eval_env, EVAL_EPISODES)
    else:  # SB3's evaluate_policy carries a recurrent policy's state (episode_start resets it)
        mean, std, success = evaluate_success(model, eval_env, EVAL_EPISODES)
    return {"wall_time_s": round(wall, 1), "eval_mean": round(float(mean), 2),
            "eval_std": round(float(std), 2), "torch_threads": threads,
            "algorithm": type(model).__name__, "library": type(model).__module__.split(".")[0],
            "eval_success_rate": success, "eval_invalid_actions": invalid}


def evaluate_success(model, eval_env, episodes: int) -> tuple[float, float, float | None]:
    """SB3's evaluate_policy (deterministic): (mean, std of the episode returns, success rate:
    the share of the episodes whose last info has is_success true; None when the env reports
    none)."""
    from stable_baselines3.common.evaluation import evaluate_policy

    successes: list[bool] = []

    def count(local: dict, _globals: dict) -> None:  # called per sub-env and step
        info = local["info"]
        # The episodes evaluate_policy counts: a done with the Monitor's "episode" summary.
        if local["done"] and "episode" in info and "is_success" in info:
            successes.append(bool(info["is_success"]))

    mean, std = evaluate_policy(model, eval_env, n_eval_episodes=episodes, deterministic=True,
                                callback=count)
    return float(mean), float(std), (float(np.mean(successes)) if successes else None)


def run_sb3_atari(algo: str, env_id: str, cfg, seed: int, steps: int) -> dict:
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.vec_env import VecFrameStack

    # SB3's AtariWrapper skips frames itself: ALE/*-v5 is made with frameskip=1 (sticky actions
    # kept), as rl_sever makes it; *NoFrameskip-v4 already is.
    env_kwargs = {"frameskip": 1} if env_id.startswith("ALE/") else None

    def atari_env(n: int, env_seed: int):
        return VecFrameStack(make_atari_env(env_id, n_envs=n, seed=env_seed,
                                            env_kwargs=env_kwargs), n_stack=4)

    model = sb3_model(algo, atari_env(cfg.n_envs, seed), cfg, seed, policy="CnnPolicy")
    t0 = time.perf_counter()
    model.learn(steps)
    wall = time.perf_counter() - t0
    mean, std = evaluate_policy(model, atari_env(1, seed + 10_000), n_eval_episodes=EVAL_EPISODES,
                                deterministic=True)
    return {"wall_time_s": round(wall, 1), "eval_mean": round(float(mean), 2),
            "eval_std": round(float(std), 2)}


def markdown(rows: list[dict]) -> str:
    """The table: both sides' eval and learn() wall time, their ratio (rl_sever / SB3: above 1,
    rl_sever is slower), the sb3-contrib algorithm where one stands in for SB3, on goal envs the
    success rate and on masked cases the actions outside the masks during evaluation."""
    lines = [f"| case | env steps (published) | rl_sever eval ({EVAL_EPISODES} ep.) | wall s "
             f"| SB3 eval ({EVAL_EPISODES} ep.) | SB3 wall s | wall rl_sever / SB3 "
             "| reference (zoo) | reached ref. mean - std |",
             "|---|---|---|---:|---|---:|---:|---|---|"]
    for r in rows:
        reached = {True: "yes", False: "**no**", None: "budget cut"}[r["reached"]]
        if r["reference_mean"] is None:
            reached = "no reference"
        sb3, sb3_eval, sb3_wall, ratio = r.get("sb3"), "-", "-", "-"
        if sb3:
            sb3_eval = eval_cell(sb3)
            if sb3.get("library") == "sb3_contrib":
                sb3_eval += f" ({sb3['algorithm']}, sb3-contrib)"
            sb3_wall = f"{sb3['wall_time_s']:.0f}"
            if sb3["wall_time_s"] > 0:
                ratio = f"{r['wall_time_s'] / sb3['wall_time_s']:.2f}"
        lines.append(f"| {r['case']} (seed {r['seed']}) | {r['steps']:,} ({r['published_budget']:,}) "
                     f"| {eval_cell(r)} | {r['wall_time_s']:.0f} | {sb3_eval} | {sb3_wall} | "
                     f"{ratio} | {reference(r)} | {reached} |")
    return "\n".join(lines) + "\n"


def eval_cell(r: dict) -> str:
    cell = f"{r['eval_mean']:.1f} ± {r['eval_std']:.1f}"
    if r.get("eval_success_rate") is not None:
        cell += f", success {r['eval_success_rate']:.2f}"
    if r.get("eval_invalid_actions") is not None:
        cell += f", {r['eval_invalid_actions']} invalid actions"
    return cell


def reference(r: dict) -> str:
    return "-" if r["reference_mean"] is None else f"{r['reference_mean']:g} ± {r['reference_std']:g}"


def draw(rows: list[dict], out: str) -> None:
    """One panel per env: return against env steps of every case run on it."""
    from rl_sever.core.curves import load_curve, plot_panels

    by_env: dict[str, list] = {}
    for r in rows:
        if r["run_dir"]:
            by_env.setdefault(r["env_id"], []).append(load_curve(r["run_dir"]))
    if by_env:
        plot_panels(by_env, out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=FITS_HERE, choices=list(CASES))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--steps", type=int, default=None, help="override every case's budget")
    parser.add_argument("--sb3", action="store_true", help="also run Stable-Baselines3 (bench extra)")
    parser.add_argument("--torch-threads", type=int, default=1, help="torch threads for SB3")
    parser.add_argument("--only-sb3", action="store_true",
                        help="train and evaluate only Stable-Baselines3 (no table or plot)")
    parser.add_argument("--out", default="bench/results_returns.json")
    parser.add_argument("--md", default="bench/results_returns.md")
    parser.add_argument("--logdir", default="bench/runs_returns", help="run folders of the cases")
    parser.add_argument("--plot", default="bench/results_returns.png",
                        help="learning curves of the cases (one panel per env)")
    args = parser.parse_args(argv)
    rows = []
    for name in args.cases:
        for seed in args.seeds:
            rows.append(run_case(name, seed, args.steps, args.sb3 or args.only_sb3,
                                 args.logdir, args.torch_threads, args.only_sb3))
            print(json.dumps(rows[-1]), flush=True)
            out = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                               "platform": platform.platform()}, "results": rows}
            with open(args.out, "w") as f:  # after every case: a long table survives a crash
                json.dump(out, f, indent=2)
            if args.only_sb3:
                continue
            with open(args.md, "w") as f:
                f.write(markdown(rows))
            draw(rows, args.plot)
    if not args.only_sb3:
        print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
