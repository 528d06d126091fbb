"""rl_sever agents: one page per algorithm (its terms, its defaults, its flow contract)."""

from agents.a2c import A2C, A2CConfig
from agents.ppo import PPO, PPOConfig
from agents.sac import SAC, SACConfig
from agents.td3 import DDPG, TD3, DDPGConfig, TD3Config
from rl_sever.core.agent import Agent

load = Agent.load

__all__ = ["A2C", "A2CConfig", "DDPG", "DDPGConfig", "PPO", "PPOConfig", "SAC", "SACConfig",
           "TD3", "TD3Config", "load"]
