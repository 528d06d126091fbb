"""Reference scores that `rl-sever report --normalize` divides by: 0 is a random policy's
return, 1 the reference's.

- RANDOM: the mean return of uniformly random actions over 100 episodes (reset seeds 0-99,
  action-space seed 0), measured for rl_sever with Gymnasium 1.4 (MuJoCo envs: v5).
- ZOO: the rl-baselines3-zoo benchmark's return for the algorithm rl_sever's preset follows
  (named beside it), the figures bench/returns.py checks against.
- ATARI: the random and human scores of the Atari-57 human-normalised score as the recent
  literature and rliable's Atari data use them (Pong -20.7 / 14.6, Breakout 1.7 / 30.5; the
  DQN Nature paper's human scores differ for some games), by game name (ALE/Breakout-v5 and
  BreakoutNoFrameskip-v4 are "Breakout").
"""

from __future__ import annotations

import re

RANDOM = {
    "CartPole-v1": 23.7, "Acrobot-v1": -497.1, "LunarLander-v3": -192.0, "Pendulum-v1": -1207.6,
    "MountainCar-v0": -200.0, "MountainCarContinuous-v0": -33.3, "BipedalWalker-v3": -102.8,
    "HalfCheetah-v5": -282.5, "Hopper-v5": 16.7, "Walker2d-v5": 1.8, "Ant-v5": -48.0,
    "Humanoid-v5": 112.6, "Swimmer-v5": 0.8, "Reacher-v5": -43.3, "InvertedPendulum-v5": 5.2,
    "InvertedDoublePendulum-v5": 49.1,
}
ZOO = {  # env id: (return, the zoo algorithm it is from)
    "CartPole-v1": (500.0, "ppo"), "Acrobot-v1": (-73.5, "ppo"),
    "LunarLander-v3": (242.0, "ppo"), "Pendulum-v1": (-157.0, "sac"),
    "HalfCheetah-v5": (9535.0, "sac"),
}
ATARI = {  # game: (random, human)
    "Alien": (227.8, 7127.7), "Amidar": (5.8, 1719.5), "Assault": (222.4, 742.0),
    "Asterix": (210.0, 8503.3), "Asteroids": (719.1, 47388.7), "Atlantis": (12850.0, 29028.1),
    "BankHeist": (14.2, 753.1), "BattleZone": (2360.0, 37187.5), "BeamRider": (363.9, 16926.5),
    "Boxing": (0.1, 12.1), "Breakout": (1.7, 30.5), "Enduro": (0.0, 860.5),
    "Freeway": (0.0, 29.6), "Frostbite": (65.2, 4334.7), "Gopher": (257.6, 2412.5),
    "MsPacman": (307.3, 6951.6), "Pong": (-20.7, 14.6), "Qbert": (163.9, 13455.0),
    "Seaquest": (68.4, 42054.7), "SpaceInvaders": (148.0, 1668.7),
}
SCHEMES = ("zoo", "human")


def atari_game(env_id: str) -> str | None:
    """"Breakout" for ALE/Breakout-v5 or BreakoutNoFrameskip-v4; None for other envs."""
    m = re.fullmatch(r"(?:ALE/)?([A-Za-z]+?)(?:NoFrameskip)?-v\d+", env_id)
    return m.group(1) if m and m.group(1) in ATARI else None


def reference(env_id: str, scheme: str) -> tuple[float, float] | None:
    """(random score, reference score) of `env_id` under `scheme` (zoo: the zoo's return;
    human: Atari's human score), or None when there is none."""
    if scheme == "human":
        game = atari_game(env_id)
        return ATARI[game] if game else None
    if scheme == "zoo":
        if env_id in ZOO and env_id in RANDOM:
            return RANDOM[env_id], ZOO[env_id][0]
        return None
    raise ValueError(f"unknown normalisation {scheme!r}; one of {', '.join(SCHEMES)}")
