"""Classic-control environments as batched, pure TensorFlow functions.

Each environment mirrors a Gymnasium one (same dynamics, bounds, rewards, termination and
TimeLimit) so a rollout can run entirely inside ``tf.function`` / ``tf.while_loop``.
See ``envs.tfnative.base`` for the protocol and ``make_vec_env`` for a Gymnasium
``VectorEnv`` view over it.
"""

from __future__ import annotations

from envs.errors import UnknownNameError, suggest
from envs.tfnative.acrobot import Acrobot
from envs.tfnative.base import EnvState, TFEnv, as_key
from envs.tfnative.cartpole import CartPole
from envs.tfnative.mountain_car import MountainCar
from envs.tfnative.mountain_car_continuous import MountainCarContinuous
from envs.tfnative.pendulum import Pendulum
from envs.tfnative.vector_view import TFNativeVectorEnv

_REGISTRY: dict[str, type[TFEnv]] = {
    cls.name: cls for cls in (CartPole, Pendulum, Acrobot, MountainCar, MountainCarContinuous)
}


def names() -> list[str]:
    """Gymnasium ids that have a TF-native implementation, sorted."""
    return sorted(_REGISTRY)


def get(name: str, **kwargs) -> TFEnv:
    """A TF-native env by Gymnasium id (or unversioned id); kwargs (e.g. ``max_episode_steps``,
    ``physics_dtype``) go to its constructor.

    Raises UnknownNameError (a KeyError) with close-name suggestions for unknown ids.
    """
    # Like gym.make, an unversioned id means its (only) registered version.
    versions = [key for key in _REGISTRY if key.rsplit("-v", 1)[0] == name]
    if name not in _REGISTRY and len(versions) == 1:
        name = versions[0]
    if name not in _REGISTRY:
        raise UnknownNameError(f"No TF-native environment {name!r}.{suggest(name, _REGISTRY)}"
                               f" Available: {', '.join(names())}.")
    return _REGISTRY[name](**kwargs)


def make_vec_env(name: str, n_envs: int, seed: int | None = None, *,
                 jit_compile: bool = False) -> TFNativeVectorEnv:
    """A Gymnasium VectorEnv (SAME_STEP autoreset) stepping n_envs copies of ``name`` in TF.

    ``seed`` seeds the first ``reset()`` called without a seed; ``jit_compile`` compiles the
    step with XLA (see TFNativeVectorEnv).
    """
    return TFNativeVectorEnv(get(name), n_envs, seed=seed, jit_compile=jit_compile)


__all__ = ["Acrobot", "CartPole", "EnvState", "MountainCar", "MountainCarContinuous", "Pendulum",
           "TFEnv", "TFNativeVectorEnv", "as_key", "get", "make_vec_env", "names"]
