"""Dict observations with images: kept as a Dict, each key made agent-ready on its own.

A Dict observation whose values include a uint8 image (HWC) reaches the agent as a Dict:
image keys unchanged (uint8, stored as such in the buffers, scaled inside the network), every
other key flattened to a 1-D float32 vector (Discrete as one-hot, nested Dict/Tuple values
concatenated). rl_sever gives each image key its own CNN and concatenates the features with
the vector keys (rl_sever.nn.encoders.DictEncoder). A Dict of vectors only is flattened whole
by `envs.factory.preprocess_observation` (the keys' values concatenated in the Dict's order):
for vectors, one encoder per key that flattens them computes the same input.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.pixels import is_image_space


def has_image_key(space: spaces.Space) -> bool:
    """True for a Dict observation space with at least one uint8 HWC image value."""
    return isinstance(space, spaces.Dict) and any(is_image_space(s) for s in space.spaces.values())


def _vector_space(space: spaces.Space) -> spaces.Box:
    flat = spaces.flatten_space(space)
    return spaces.Box(flat.low.astype(np.float32), flat.high.astype(np.float32), flat.shape,
                      np.float32)


class DictObservation(gym.ObservationWrapper):
    """Image keys as they are; every other key a flat float32 vector (module docstring)."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        source = env.observation_space
        self._source = source
        self._images = {k for k, s in source.spaces.items() if is_image_space(s)}
        self.observation_space = spaces.Dict(
            {k: s if k in self._images else _vector_space(s) for k, s in source.spaces.items()})

    def observation(self, observation: dict[str, Any]) -> dict[str, np.ndarray]:
        return {k: (observation[k] if k in self._images
                    else np.asarray(spaces.flatten(sub, observation[k]), np.float32))
                for k, sub in self._source.spaces.items()}
