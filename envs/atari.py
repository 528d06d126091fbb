"""Atari (ale-py) ids and their standard preprocessing, applied automatically by the factories.

Per sub-env, in this order (as in Stable-Baselines3's AtariWrapper and CleanRL):
  ale env (frameskip=1; v5 keeps its sticky actions)
  -> Gymnasium's AtariPreprocessing: up to `noop_max` no-ops on reset, `frame_skip` with a
     max-pool of the last two frames, `screen_size` x `screen_size` grayscale
  -> GameScore: the raw score and length of every whole game (`info["game"]` when one ends)
  -> training only: EpisodicLife (a lost life ends the episode, the game goes on) and
     ClipReward (sign of the reward)
  -> FireReset (games with a FIRE action start by pressing it; in evaluation, where a lost life
     does not end the episode, also after every lost life, so a policy that never fires
     cannot stall a game until the time limit)
  -> FrameStack: the last `frame_stack` frames as one uint8 HWC image [84, 84, 4].
Training statistics and evaluation report the GameScore figures: raw game scores of whole
games, never clipped rewards of single lives. The settings are `AtariSettings` (config key
`atari`), recorded in every run's config.json.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.errors import ConfigError

ENTRY_POINT = "ale_py.env:AtariEnv"


@dataclasses.dataclass
class AtariSettings:
    """The standard Atari preprocessing (Mnih et al. 2015; SB3 / CleanRL defaults)."""

    noop_max: int = 30
    """Up to this many no-op actions after every reset (random starts)."""
    frame_skip: int = 4
    """Frames per agent step (the action repeats; the last two frames are max-pooled)."""
    screen_size: int = 84
    """Frames are resized to screen_size x screen_size grayscale."""
    frame_stack: int = 4
    """The observation is the last frame_stack frames, [screen_size, screen_size, frame_stack]."""
    episodic_life: bool = True
    """Training only: a lost life ends the learner's episode (the game goes on)."""
    clip_reward: bool = True
    """Training only: rewards become their sign (statistics and evaluation keep the score)."""
    fire_reset: bool = True
    """Press FIRE after every reset (and, in evaluation, every lost life) in games that have it."""

    def validate(self) -> None:
        for key, least in dict(frame_skip=1, screen_size=1, frame_stack=1, noop_max=0).items():
            if getattr(self, key) < least:
                raise ConfigError(f"atari.{key} must be >= {least}, got {getattr(self, key)}")


def register() -> None:
    """Register the ale-py ids (ALE/<Game>-v5, <Game>NoFrameskip-v4) with Gymnasium."""
    try:
        import ale_py
    except ImportError as e:
        raise ConfigError("Atari games need ale-py: pip install 'rl_sever[atari]'") from e
    gym.register_envs(ale_py)


def is_atari(env_id: str) -> bool:
    """Whether `env_id` names an ale-py game (registering the ids when it looks like one)."""
    if not isinstance(env_id, str):
        return False
    if env_id.startswith("ALE/") or "NoFrameskip" in env_id:
        register()
    return getattr(gym.registry.get(env_id), "entry_point", None) == ENTRY_POINT


def base_kwargs(env_id: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """gym.make kwargs for the raw game: one frame per step (skipping is preprocessing's; v5's
    sticky actions stay)."""
    if kwargs.get("frameskip", 1) != 1:
        raise ConfigError(f"env_kwargs frameskip={kwargs['frameskip']} for {env_id}: rl_sever "
                          "skips frames in preprocessing; set atari.frame_skip instead")
    return {**kwargs, "frameskip": 1}


def preprocess(env: gym.Env, settings: AtariSettings, *, training: bool) -> gym.Env:
    """The wrapper stack of the module docstring around one raw ale-py env."""
    s = settings
    env = gym.wrappers.AtariPreprocessing(env, noop_max=s.noop_max, frame_skip=s.frame_skip,
                                          screen_size=s.screen_size, terminal_on_life_loss=False,
                                          grayscale_obs=True, scale_obs=False)
    env = GameScore(env)
    if training and s.episodic_life:
        env = EpisodicLife(env)
    if training and s.clip_reward:
        env = gym.wrappers.TransformReward(env, lambda r: float(np.sign(r)))
    if s.fire_reset and "FIRE" in env.unwrapped.get_action_meanings()[1:2]:
        env = FireReset(env, on_life_loss=not (training and s.episodic_life))
    return FrameStack(env, s.frame_stack)


class GameScore(gym.Wrapper):
    """Adds `info["game"] = {"r": score, "l": agent steps}` at the step a whole game ends
    (placed below the training-only wrappers, so the score is raw and spans every life)."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.score, self.length = 0.0, 0

    def reset(self, **kwargs):
        self.score, self.length = 0.0, 0
        return self.env.reset(**kwargs)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.score += float(reward)
        self.length += 1
        if terminated or truncated:
            info = {**info, "game": {"r": self.score, "l": self.length}}
        return obs, reward, terminated, truncated, info


class EpisodicLife(gym.Wrapper):
    """A lost life ends the episode for the learner; the game itself goes on, and `reset` only
    restarts it after the real game over (otherwise it takes one no-op step)."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.lives, self.game_over = 0, True

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.game_over = terminated or truncated
        lives = self.env.unwrapped.ale.lives()
        if 0 < lives < self.lives:
            terminated = True
        self.lives = lives
        return obs, reward, terminated, truncated, info

    def reset(self, **kwargs):
        if self.game_over:
            obs, info = self.env.reset(**kwargs)
        else:
            obs, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:  # the no-op ended the game after all
                obs, info = self.env.reset(**kwargs)
        self.lives = self.env.unwrapped.ale.lives()
        return obs, info


class FireReset(gym.Wrapper):
    """Press FIRE (then action 2) after every reset: games that wait for it start. With
    `on_life_loss`, also after a lost life that does not end the episode (the rewards of those
    steps are added to the step's reward)."""

    def __init__(self, env: gym.Env, *, on_life_loss: bool = False):
        super().__init__(env)
        self.on_life_loss, self.lives = on_life_loss, 0

    def reset(self, **kwargs):
        self.env.reset(**kwargs)
        for action in (1, 2):
            obs, _, terminated, truncated, info = self.env.step(action)
            if terminated or truncated:
                obs, info = self.env.reset(**kwargs)
        self.lives = self.env.unwrapped.ale.lives()
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        lives = self.env.unwrapped.ale.lives()
        if self.on_life_loss and 0 < lives < self.lives:
            for press in (1, 2):
                if terminated or truncated:
                    break
                obs, more, terminated, truncated, info = self.env.step(press)
                reward += more
        self.lives = self.env.unwrapped.ale.lives()
        return obs, reward, terminated, truncated, info


class FrameStack(gym.Wrapper):
    """The last `n` grayscale frames as one uint8 HWC image [H, W, n] (the CNN's layout)."""

    def __init__(self, env: gym.Env, n: int):
        super().__init__(env)
        h, w = env.observation_space.shape[:2]
        self.frames: collections.deque = collections.deque(maxlen=n)
        self.observation_space = spaces.Box(0, 255, (h, w, n), np.uint8)

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self.frames.extend([obs] * self.frames.maxlen)
        return np.stack(self.frames, axis=-1), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.frames.append(obs)
        return np.stack(self.frames, axis=-1), reward, terminated, truncated, info
