"""rl_sever agents: each owns its networks, compiled steps and flow contract."""

from agents.a2c import A2C, A2CConfig
from agents.ppo import PPO, PPOConfig
from rl_sever.agent import Agent

load = Agent.load

__all__ = ["A2C", "A2CConfig", "PPO", "PPOConfig", "load"]
