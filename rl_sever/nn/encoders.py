"""Observation encoders shared by actor, critics and auxiliary modules, for every algorithm.

Three kinds: an MLP for flat observations, a small CNN for NHWC uint8 images (scaled to [0, 1]
inside the graph, so buffers and envs keep compact uint8 frames), and a user's own Keras model
(`UserEncoder`, the agents' `encoder=` keyword). One instance is meant to be shared: which
losses may train it is the agent's business (`network.encoder_grad_from`); the others read its
features through `sever`.
"""

from __future__ import annotations

import math
import re

import keras
import numpy as np
import tensorflow as tf

from rl_sever.config.run import ENCODER_KINDS
from rl_sever.errors import ConfigError
from rl_sever.nn.layers import DenseStack, initializer

NATURE_MIN_SIDE = 80  # encoder "auto": the Nature CNN for images this large (Atari's 84x84)


def is_image(obs_shape: tuple[int, ...], obs_dtype) -> bool:
    """HWC uint8 observations (what envs.pixels produces) are images (a Dict is not)."""
    return (not isinstance(obs_shape, dict) and len(obs_shape) == 3
            and tf.as_dtype(obs_dtype) == tf.uint8)


def zero_obs(obs_shape, obs_dtype, n: int = 1):
    """`n` zero observations (a Dict observation's: key -> zeros)."""
    if isinstance(obs_shape, dict):
        return {k: tf.zeros((n, *shape), obs_dtype[k]) for k, shape in obs_shape.items()}
    return tf.zeros((n, *obs_shape), obs_dtype)


def scale_obs(obs: tf.Tensor) -> tf.Tensor:
    """uint8 -> float32 in [0, 1]; anything else -> float32 unchanged."""
    x = tf.convert_to_tensor(obs)
    return tf.cast(x, tf.float32) / 255.0 if x.dtype == tf.uint8 else tf.cast(x, tf.float32)


def flat_obs(obs: tf.Tensor) -> tf.Tensor:
    """Scaled observations flattened to [batch, features] (the input when there is no encoder)."""
    x = scale_obs(obs)
    return tf.reshape(x, [tf.shape(x)[0], int(np.prod(x.shape[1:]))])


def cnn(obs_shape: tuple[int, ...], channels: list[int], feature_dim: int, *,
        name: str = "cnn") -> keras.Sequential:
    """3x3 convolutions (stride 2 for the first two, then 1), ReLU, a linear projection to
    `feature_dim`, LayerNorm and tanh (bounded features, as in pixel SAC practice)."""
    if len(obs_shape) != 3:
        raise ConfigError(f"the CNN encoder needs HWC image observations, got shape {obs_shape}")
    layers: list[keras.layers.Layer] = [keras.Input(obs_shape)]
    layers += [keras.layers.Conv2D(c, 3, strides=2 if i < 2 else 1, activation="relu",
                                   name=f"{name}_conv{i}") for i, c in enumerate(channels)]
    layers += [keras.layers.Flatten(name=f"{name}_flatten"),
               keras.layers.Dense(feature_dim, name=f"{name}_proj"),
               keras.layers.LayerNormalization(name=f"{name}_norm"),
               keras.layers.Activation("tanh", name=f"{name}_tanh")]
    return keras.Sequential(layers, name=name)


def nature_cnn(obs_shape: tuple[int, ...], *, name: str = "nature") -> keras.Sequential:
    """The Nature DQN CNN (Mnih et al. 2015), as SB3 and CleanRL use it on Atari: 32 8x8/4,
    64 4x4/2, 64 3x3/1 convolutions, a 512-unit dense layer, ReLU, orthogonal init (gain
    sqrt 2). Needs images of at least 36 px a side."""
    if len(obs_shape) != 3 or min(obs_shape[:2]) < 36:
        raise ConfigError(f"the Nature CNN needs HWC images of at least 36x36, got {obs_shape}")
    init = initializer(math.sqrt(2), True)
    conv = [(32, 8, 4), (64, 4, 2), (64, 3, 1)]
    layers: list[keras.layers.Layer] = [keras.Input(obs_shape)]
    layers += [keras.layers.Conv2D(c, k, strides=st, activation="relu", kernel_initializer=init,
                                   name=f"{name}_conv{i}") for i, (c, k, st) in enumerate(conv)]
    layers += [keras.layers.Flatten(name=f"{name}_flatten"),
               keras.layers.Dense(512, activation="relu", kernel_initializer=init,
                                  name=f"{name}_dense")]
    return keras.Sequential(layers, name=name)


class Encoder(tf.Module):
    """obs -> features [batch, out_dim]; `kind` is "mlp", "cnn" or "nature"."""

    def __init__(self, obs_shape: tuple[int, ...], kind: str, *, sizes: list[int] = (256,),
                 activation: str = "relu", channels: list[int] = (32, 32, 32),
                 feature_dim: int = 50, ortho: bool = False, name: str = "encoder"):
        super().__init__(name=name)
        if kind not in ("mlp", "cnn", "nature"):
            raise ConfigError(f"encoder kind must be mlp, cnn or nature, got '{kind}'")
        self.obs_shape, self.kind = tuple(obs_shape), kind
        self._spec = {"sizes": list(sizes), "activation": activation, "channels": list(channels),
                      "feature_dim": feature_dim, "ortho": ortho}
        if kind == "cnn":
            self.net = cnn(self.obs_shape, list(channels), feature_dim, name=name)
            self.out_dim = int(feature_dim)
        elif kind == "nature":
            self.net, self.out_dim = nature_cnn(self.obs_shape, name=name), 512
        else:
            self.net = DenseStack(int(np.prod(self.obs_shape)), list(sizes), None, activation,
                                  init="orthogonal" if ortho else "glorot", name=name)
            self.out_dim = int(sizes[-1])
        self(tf.zeros((1, *self.obs_shape), tf.float32))  # build

    def __call__(self, obs: tf.Tensor) -> tf.Tensor:
        x = flat_obs(obs) if self.kind == "mlp" else scale_obs(obs)
        return self.net(x)

    @property
    def weights(self) -> list:
        """The encoder's trainable variables (what optimizers and the audit list)."""
        return list(self.net.trainable_variables)

    @property
    def trainable_variables(self) -> list:  # tf.Module's own walk does not enter Keras 3 models
        return self.weights

    def copy(self, name: str) -> Encoder:
        """A new encoder with the same architecture and (copied) weights: a target network."""
        twin = Encoder(self.obs_shape, self.kind, name=name, **self._spec)
        for t, s in zip(twin.net.variables, self.net.variables):
            t.assign(s)
        return twin


class UserEncoder(tf.Module):
    """A user's keras.Model / keras.Layer as the agent's shared encoder.

    It receives the observations as float32 in their own shape (uint8 images scaled to [0, 1])
    and must return features of shape [batch, d]. Its trainable variables are the "encoder"
    module: `network.encoder_grad_from` says which losses train it, `freeze: {encoder: ...}`
    freezes it, the audit shows it, checkpoints and export hold it.
    """

    kind = "user"

    def __init__(self, model, obs_shape: tuple[int, ...], *, name: str = "encoder"):
        super().__init__(name=name)
        if not isinstance(model, keras.layers.Layer):  # keras.Model is a Layer too
            raise ConfigError(f"encoder= takes a keras.Model or keras.layers.Layer, got "
                              f"{type(model).__name__}")
        self.net, self.obs_shape = model, tuple(obs_shape)
        try:
            out = self(tf.zeros((2, *self.obs_shape), tf.float32))
        except Exception as e:  # the user's model: say which input it was given
            raise ConfigError(f"encoder {model.name!r} failed on observations of shape "
                              f"(batch, {', '.join(map(str, self.obs_shape))}): "
                              f"{type(e).__name__}: {e}") from e
        if out.shape.rank != 2 or out.shape[0] != 2 or not out.shape[1]:
            raise ConfigError(f"encoder {model.name!r} must map (batch, *obs_shape) to "
                              f"(batch, features); it returned shape {tuple(out.shape)}")
        if not self.weights:
            raise ConfigError(f"encoder {model.name!r} has no trainable variables (a frozen "
                              "encoder is a freeze: {encoder: {}} setting, not an untrainable model)")
        self.out_dim = int(out.shape[1])

    def __call__(self, obs: tf.Tensor) -> tf.Tensor:
        return tf.cast(self.net(scale_obs(obs)), tf.float32)

    @property
    def weights(self) -> list:
        return list(self.net.trainable_variables)

    @property
    def trainable_variables(self) -> list:
        return self.weights

    def copy(self, name: str) -> UserEncoder:
        """A twin with copied weights (a target network): the model is rebuilt from its config."""
        try:
            twin_net = (keras.models.clone_model(self.net) if isinstance(self.net, keras.Model)
                        else type(self.net).from_config(self.net.get_config()))
        except Exception as e:
            raise ConfigError(f"encoder {self.net.name!r} cannot be cloned for the target network "
                              f"({type(e).__name__}: {e}); give it get_config/from_config") from e
        twin = UserEncoder(twin_net, self.obs_shape, name=name)
        for t, s in zip(twin.net.variables, self.net.variables):
            t.assign(s)
        return twin


class DictEncoder(tf.Module):
    """One encoder per key of a Dict observation (envs.dict_obs), features concatenated in the
    keys' order: a CNN for an image key (the Nature CNN from NATURE_MIN_SIDE px, else the small
    one; `kind` cnn or nature picks one), a vector key as it is (flattened, as SB3's
    CombinedExtractor) or through an MLP with `kind` mlp, and a user's model where `user` (a
    dict key -> keras model) names the key. One module "encoder" for freezing and the audit."""

    kind = "dict"

    def __init__(self, obs_shape: dict, obs_dtype: dict, kind: str = "auto", *, user=None,
                 name: str = "encoder", **spec):
        super().__init__(name=name)
        self.obs_shape, self.obs_dtype, self._kind, self._spec = obs_shape, obs_dtype, kind, spec
        user = dict(user or {})
        unknown = sorted(set(user) - set(obs_shape))
        if unknown:
            raise ConfigError(f"encoder= names keys {unknown} the observation does not have; its "
                              f"keys are {list(obs_shape)}")
        self.parts: dict[str, Encoder | UserEncoder | None] = {}
        for key, shape in obs_shape.items():
            part_name = f"{name}_{re.sub(r'[^A-Za-z0-9_]', '_', key)}"
            if key in user:
                self.parts[key] = UserEncoder(user[key], shape, name=part_name)
            elif is_image(shape, obs_dtype[key]):
                pick = kind if kind in ("cnn", "nature") else (
                    "nature" if min(shape[:2]) >= NATURE_MIN_SIDE else "cnn")
                self.parts[key] = Encoder(shape, pick, name=part_name, **spec)
            elif kind == "mlp":
                self.parts[key] = Encoder(shape, "mlp", name=part_name, **spec)
            else:
                self.parts[key] = None  # the vector itself
        self._user = user
        self.out_dim = sum(int(np.prod(obs_shape[k])) if p is None else p.out_dim
                           for k, p in self.parts.items())

    def __call__(self, obs: dict) -> tf.Tensor:
        return tf.concat([flat_obs(obs[k]) if p is None else p(obs[k])
                          for k, p in self.parts.items()], axis=-1)

    @property
    def weights(self) -> list:
        return [w for p in self.parts.values() if p is not None for w in p.weights]

    @property
    def trainable_variables(self) -> list:
        return self.weights

    def copy(self, name: str) -> DictEncoder:
        """A twin with the same parts and copied weights (a target network)."""
        twin = DictEncoder.__new__(DictEncoder)
        tf.Module.__init__(twin, name=name)
        twin.obs_shape, twin.obs_dtype, twin._kind, twin._spec = (
            self.obs_shape, self.obs_dtype, self._kind, self._spec)
        twin._user, twin.out_dim = self._user, self.out_dim
        twin.parts = {k: None if p is None else p.copy(f"{name}_{re.sub(r'[^A-Za-z0-9_]', '_', k)}")
                      for k, p in self.parts.items()}
        return twin


def make_encoder(obs_shape, obs_dtype, kind: str = "auto", *, user=None,
                 **spec) -> Encoder | UserEncoder | DictEncoder:
    """The shared encoder: the user's model if given, else an Encoder of `kind` ("auto": the
    Nature CNN for uint8 images of at least NATURE_MIN_SIDE px, the small CNN for smaller
    ones, MLP otherwise); for a Dict observation a DictEncoder (`user`: key -> model)."""
    if isinstance(obs_shape, dict):
        if user is not None and not isinstance(user, dict):
            raise ConfigError("a Dict observation takes encoder= as a dict: key -> keras model "
                              f"(its keys: {list(obs_shape)})")
        return DictEncoder(obs_shape, obs_dtype, kind, user=user, **spec)
    if user is not None:
        return UserEncoder(user, obs_shape)
    if kind not in ENCODER_KINDS:
        raise ConfigError(f"encoder must be one of {ENCODER_KINDS}, got '{kind}'")
    if kind == "auto":
        kind = "mlp" if not is_image(obs_shape, obs_dtype) else (
            "nature" if min(obs_shape[:2]) >= NATURE_MIN_SIDE else "cnn")
    return Encoder(obs_shape, kind, **spec)
