"""rl_sever: TensorFlow 2 actor-critic RL with explicit, provable gradient isolation."""

__version__ = "0.1.0"
