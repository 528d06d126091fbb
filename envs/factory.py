"""Environment factories: single and vector Gymnasium envs with rl_sever's preprocessing.

Vector envs use autoreset mode SAME_STEP: the step that ends an episode returns the next
episode's first observation, with the true last one in `info["final_obs"]` (mask
`info["_final_obs"]`). Wrapper order: base (+ preprocessing per sub-env, Atari's for Atari
games) -> seeding -> EpisodeStats (raw rewards; Atari: whole games' raw scores) ->
VecNormalize (only when a normalisation is on). Gymnasium 1.x vector wrappers do not
forward attribute lookups, so reach the wrappers with `episode_stats(env)` and
`find_normalizer(env)`.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import importlib
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.envs.registration import EnvSpec, find_highest_version, parse_env_id
from gymnasium.vector import AutoresetMode, VectorEnv, VectorWrapper
from gymnasium.wrappers import FlattenObservation, TransformObservation

from envs import atari as atari_ids
from envs import bit_flipping, io_bound, masked, partial, pixels  # noqa: F401  (register their env ids)
from envs.atari import AtariSettings
from envs.classic_vector import batched_classic
from envs.dict_obs import DictObservation, has_image_key
from envs.episodes import EpisodeStats
from envs.errors import ConfigError, UnknownNameError, suggest
from envs.pixels import is_image_space
from envs.worker_pool import WorkerPoolVectorEnv

if TYPE_CHECKING:  # envs.normalize holds TensorFlow state: imported only when normalising
    from envs.normalize import VecNormalize

TF_PREFIX = "tf:"
VECTORIZATION_MODES = ("sync", "async", "ale")  # ale: Atari games, ale-py's C++ vector env
# Word in an env's entry point or error message -> rl_sever extra that installs its dependency.
_EXTRAS = {"box2d": "box2d", "mujoco": "mujoco", "ale_py": "atari"}

_W = TypeVar("_W", bound=VectorWrapper)


def make_vec_env(env_id: str, n_envs: int = 1, *, seed: int | None = None,
                 vectorization: str = "sync", n_workers: int = 0, normalize_obs: bool = False,
                 normalize_reward: bool = False, gamma: float = 0.99, clip_obs: float = 10.0,
                 clip_reward: float = 10.0, env_kwargs: dict[str, Any] | None = None,
                 render_mode: str | None = None, atari: AtariSettings | None = None,
                 training: bool = True) -> VectorEnv:
    """Build `n_envs` copies of `env_id` as one Gymnasium vector env (SAME_STEP autoreset).

    Observations are preprocessed per sub-env (see `preprocess_observation`); Atari games get
    the standard Atari preprocessing instead (`envs.atari`, settings `atari`; its
    training-only wrappers unless `training` is False), and their statistics count whole games
    at their raw score. Ids starting with "tf:" are TF-native envs from `envs.tfnative` (given
    the seed directly).

    Seeding: with `seed` set, the action spaces are seeded now and the seed is applied at
    the first `reset()` called without a seed: sub-env i is reset with `seed + i`. So
    `env.reset()` and `env.reset(seed=seed)` give the same trajectories; an explicit
    `reset(seed=...)` always wins. Later resets without a seed continue each sub-env's
    random stream, as in Gymnasium.

    `vectorization="sync"` steps the registered CartPole and Acrobot (no kwargs, no render
    mode) as one array, bit for bit Gymnasium's envs (envs.classic_vector);
    `vectorization="async"`: one process per env, or `n_workers` processes (docs/scaling.md);
    `"ale"`: Atari games in ale-py's C++ vector env (`envs.atari_vector`).
    """
    if not isinstance(env_id, str) or not env_id:
        raise UnknownNameError(f"environment id must be a non-empty string, got {env_id!r}")
    if isinstance(n_envs, bool) or not isinstance(n_envs, (int, np.integer)) or n_envs < 1:
        raise ConfigError(f"n_envs must be a positive integer, got {n_envs!r}")
    if vectorization not in VECTORIZATION_MODES:
        raise ConfigError(f"vectorization must be one of {', '.join(VECTORIZATION_MODES)}, got "
                          f"{vectorization!r}.{suggest(str(vectorization), VECTORIZATION_MODES)}")
    check_n_workers(n_workers, int(n_envs), vectorization)
    if not 0.0 <= gamma <= 1.0:
        raise ConfigError(f"gamma must be in [0, 1], got {gamma}")
    if clip_obs <= 0 or clip_reward <= 0:
        raise ConfigError(f"clip_obs and clip_reward must be > 0, got {clip_obs}, {clip_reward}")

    games = False
    if env_id.startswith(TF_PREFIX):
        env = _make_tfnative(env_id[len(TF_PREFIX) :], int(n_envs), seed)
    else:
        kwargs, wrap = _preprocessing(env_id, env_kwargs, render_mode, atari, training)
        games = wrap is not preprocess_observation
        if vectorization == "ale" and not games:
            raise ConfigError(f"vectorization=ale is ale-py's vector env for Atari games; "
                              f"{env_id!r} is not one (use sync or async)")
        with _dependency_errors(env_id):
            if vectorization == "ale":
                from envs.atari_vector import AleVectorEnv

                kwargs.pop("frameskip")
                env = AleVectorEnv(env_id, int(n_envs), atari or AtariSettings(),
                                   training=training, **kwargs)
            elif n_workers:
                env = _make_worker_pool(env_id, int(n_envs), int(n_workers), kwargs, wrap)
            else:  # CartPole and Acrobot: stepped as one array where bit-identical
                env = ((vectorization == "sync" and batched_classic(env_id, int(n_envs), kwargs))
                       or gym.make_vec(env_id, num_envs=int(n_envs),
                                       vectorization_mode=vectorization,
                                       vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP},
                                       wrappers=[wrap], **kwargs))
        if seed is not None:
            env.action_space.seed(seed)
            env.single_action_space.seed(seed)
            env = SeedOnFirstReset(env, seed)

    env = EpisodeStats(env, games=games)
    if normalize_obs or normalize_reward:
        from envs.normalize import VecNormalize

        env = VecNormalize(env, normalize_obs=normalize_obs, normalize_reward=normalize_reward,
                           gamma=gamma, clip_obs=clip_obs, clip_reward=clip_reward)
    return env


def _preprocessing(env_id: str, env_kwargs: dict[str, Any] | None, render_mode: str | None,
                   atari: AtariSettings | None, training: bool):
    """(gym.make kwargs, the per-sub-env preprocessing) of a Gymnasium id (checked here)."""
    games = atari_ids.is_atari(env_id)
    _check_env_id(env_id)
    kwargs = dict(env_kwargs or {})
    if render_mode is not None:
        kwargs["render_mode"] = render_mode
    if not games:
        return kwargs, preprocess_observation
    wrap = functools.partial(atari_ids.preprocess, settings=atari or AtariSettings(),
                             training=training)
    return atari_ids.base_kwargs(env_id, kwargs), wrap


def _make_worker_pool(env_id: str, n_envs: int, n_workers: int, kwargs: dict[str, Any],
                      wrap) -> WorkerPoolVectorEnv:
    """`n_envs` envs built as gym.make_vec builds them, stepped by `n_workers` processes."""
    # The spec itself goes to the workers, so ids registered only in this process (a
    # script, a test module) still resolve there. _find_spec is what gym.make_vec uses.
    from gymnasium.envs.registration import _find_spec

    spec = copy.deepcopy(_find_spec(env_id))
    make_one = functools.partial(_make_preprocessed, spec, kwargs, wrap)
    env = WorkerPoolVectorEnv([make_one] * n_envs, n_workers, env_name=env_id)
    env.spec = spec
    return env


def _make_preprocessed(spec: EnvSpec, kwargs: dict[str, Any], wrap) -> gym.Env:
    return wrap(gym.make(spec, **kwargs))


def make_env(env_id: str, *, seed: int | None = None, render_mode: str | None = None,
             env_kwargs: dict[str, Any] | None = None, atari: AtariSettings | None = None,
             training: bool = False) -> gym.Env:
    """One env with the same preprocessing as `make_vec_env` (eval, rendering: by default
    without the training-only Atari wrappers).

    Seeding as in `make_vec_env`: the action space is seeded now, and the first `reset()`
    without a seed uses `seed`.
    """
    if isinstance(env_id, str) and env_id.startswith(TF_PREFIX):
        raise ConfigError(f"{env_id!r} is a TF-native env; only make_vec_env builds those")
    kwargs, wrap = _preprocessing(env_id, env_kwargs, render_mode, atari, training)
    with _dependency_errors(env_id):
        env = wrap(gym.make(env_id, **kwargs))
    if seed is not None:
        env.action_space.seed(seed)
        env = _SeedOnFirstResetEnv(env, seed)
    return env


def preprocess_observation(env: gym.Env) -> gym.Env:
    """Make a single env's observations agent-ready.

    Dict / Tuple observations and Box observations of rank != 1 are flattened to a 1-D
    float32 Box, except uint8 images (rank-3 HWC Box), which are left as they are, and Dicts
    holding such images, which stay Dicts (envs.dict_obs: images kept, other keys flattened). Other
    float Box observations (float64, float16) are cast to float32. Discrete, MultiDiscrete
    and MultiBinary observations are left for the agent to encode.
    """
    space = env.observation_space
    if is_image_space(space):
        return env
    if has_image_key(space):  # images and vectors: kept as a Dict (envs.dict_obs)
        return DictObservation(env)
    box = isinstance(space, spaces.Box)
    if isinstance(space, (spaces.Dict, spaces.Tuple)) or (box and len(space.shape) != 1):
        # Flattened Discrete parts are one-hot integers; networks want float32 either way.
        env = FlattenObservation(env)
        space = env.observation_space
    elif not (box and np.issubdtype(space.dtype, np.floating)):
        return env
    if space.dtype == np.float32:
        return env
    # Cast the bounds ourselves: gymnasium's DtypeObservation warns on every float64 Box.
    low, high = space.low.astype(np.float32), space.high.astype(np.float32)
    return TransformObservation(env, lambda obs: np.asarray(obs, np.float32),
                                spaces.Box(low, high, space.shape, np.float32))


def episode_stats(env: VectorEnv) -> EpisodeStats:
    """The EpisodeStats wrapper inside `env` (raises ValueError if there is none)."""
    found = _find_wrapper(env, EpisodeStats)
    if found is None:
        raise ValueError(f"no EpisodeStats wrapper in {env}; build envs with make_vec_env")
    return found


def find_normalizer(env: VectorEnv) -> VecNormalize | None:
    """The VecNormalize wrapper inside `env`, or None when nothing is normalised."""
    normalize = sys.modules.get("envs.normalize")  # never imported: nothing is normalised
    return None if normalize is None else _find_wrapper(env, normalize.VecNormalize)


class _SeedOnce:
    """Mixin for a wrapper: passes `seed` to the first `reset()` called without one."""

    def __init__(self, env: VectorEnv | gym.Env, seed: int) -> None:
        super().__init__(env)
        self.initial_seed = int(seed)
        self._pending = True

    def reset(self, *, seed: int | list[int | None] | None = None,
              options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        if self._pending and seed is None:
            seed = self.initial_seed
        self._pending = False
        return self.env.reset(seed=seed, options=options)


class SeedOnFirstReset(_SeedOnce, VectorWrapper):
    """Passes `seed` to the first `reset()` that is called without one."""


class _SeedOnFirstResetEnv(_SeedOnce, gym.Wrapper):
    """Single-env twin of SeedOnFirstReset."""


def _find_wrapper(env: VectorEnv, cls: type[_W]) -> _W | None:
    while True:
        if isinstance(env, cls):
            return env
        if not isinstance(env, VectorWrapper):
            return None
        env = env.env


def _check_env_id(env_id: str) -> None:
    """Raise UnknownNameError, with close registered ids, if gymnasium cannot make `env_id`."""
    if not isinstance(env_id, str) or not env_id:
        raise UnknownNameError(f"environment id must be a non-empty string, got {env_id!r}")
    name = env_id
    if ":" in env_id:  # "module:Env-v0" registers Env-v0 by importing module
        module, name = env_id.split(":", 1)
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as e:
            raise UnknownNameError(f"cannot import module {module!r} named in env id "
                                   f"{env_id!r}: {e}") from None
    if name in gym.registry:
        return
    try:
        ns, base, version = parse_env_id(name)
    except gym.error.Error:
        ns, base, version = None, name, None
    if version is None and find_highest_version(ns, base) is not None:
        return  # an unversioned id: gymnasium picks the latest version
    versions = sorted((s for s in gym.registry.values() if s.namespace == ns and s.name == base),
                      key=lambda s: -1 if s.version is None else s.version, reverse=True)
    hint = (f" Did you mean: {', '.join(s.id for s in versions[:3])}?" if versions
            else suggest(name, gym.registry.keys()))
    raise UnknownNameError(f"unknown environment id {env_id!r}.{hint} "
                           "(gymnasium.pprint_registry() lists the registered ids)")


@contextlib.contextmanager
def _dependency_errors(env_id: str) -> Iterator[None]:
    """Turn gymnasium's DependencyNotInstalled into a ConfigError naming the rl_sever extra."""
    try:
        yield
    except gym.error.DependencyNotInstalled as e:
        entry_point = str(getattr(gym.registry.get(env_id.split(":")[-1]), "entry_point", ""))
        haystack = f"{entry_point} {e}".lower()
        extra = next((x for key, x in _EXTRAS.items() if key in haystack), None)
        fix = (f"install it with: pip install 'rl_sever[{extra}]'" if extra
               else "install the missing package named above")
        raise ConfigError(f"{env_id!r} needs an optional dependency ({e}); {fix}") from e


def _make_tfnative(name: str, n_envs: int, seed: int | None) -> VectorEnv:
    try:
        tfnative = importlib.import_module("envs.tfnative")
    except ModuleNotFoundError as e:
        if e.name != "envs.tfnative":
            raise
        raise UnknownNameError(f"TF-native environments are unavailable (no envs.tfnative "
                               f"module), so {TF_PREFIX}{name} cannot be made") from None
    return tfnative.make_vec_env(name, n_envs, seed=seed)


def check_n_workers(n_workers: Any, n_envs: int, vectorization: str) -> None:
    """Raise ConfigError unless `n_workers` fits `n_envs` and `vectorization` (0 = default)."""
    if isinstance(n_workers, bool) or not isinstance(n_workers, (int, np.integer)) or n_workers < 0:
        raise ConfigError(f"n_workers must be a non-negative integer, got {n_workers!r}")
    if n_workers and vectorization != "async":
        raise ConfigError(f"n_workers={n_workers} needs vectorization=async (sync steps every "
                          "env in the training process); set vectorization=async or n_workers=0")
    if n_workers > n_envs:
        raise ConfigError(f"n_workers={n_workers} is more than n_envs={n_envs}; each worker needs "
                          "at least one env (best: a divisor of n_envs, so the shares are equal)")
