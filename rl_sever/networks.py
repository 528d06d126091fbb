"""Network builders: MLPs and the actor-critic with separate or shared encoder."""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from rl_sever.distributions import ActionHead
from rl_sever.isolation import sever
from rl_sever.settings import NetworkConfig, parse_grad_from
from rl_sever.spaces import ActionSpec


def _init(gain: float, ortho: bool):
    return keras.initializers.Orthogonal(gain=gain) if ortho else "glorot_uniform"


def mlp(sizes: list[int], activation: str, *, ortho: bool = True, name: str = "mlp") -> keras.Sequential:
    """Dense layers of the given widths, each followed by `activation`."""
    layers = [
        keras.layers.Dense(h, activation=activation, kernel_initializer=_init(math.sqrt(2), ortho),
                           bias_initializer="zeros", name=f"{name}_{i}")
        for i, h in enumerate(sizes)
    ]
    return keras.Sequential(layers, name=name)


def linear(units: int, gain: float, *, ortho: bool = True, name: str) -> keras.layers.Dense:
    return keras.layers.Dense(units, kernel_initializer=_init(gain, ortho), bias_initializer="zeros",
                              name=name)


def preprocess(obs: tf.Tensor) -> tf.Tensor:
    """Flatten observations to [batch, features] float32; uint8 images are scaled to [0, 1]."""
    x = tf.convert_to_tensor(obs)
    x = tf.cast(x, tf.float32) / 255.0 if x.dtype == tf.uint8 else tf.cast(x, tf.float32)
    return tf.reshape(x, [tf.shape(x)[0], -1])


class ActorCritic(tf.Module):
    """Policy and value networks.

    Modules (for freezing, the optimizer and the flow audit): "actor" (policy body, head and
    log-std), "critic" (value body and head) and, with `shared_encoder`, "encoder". A shared
    encoder is trained only by the losses named in `encoder_grad_from`; the other head reads its
    features through `sever`, so its loss cannot move the encoder.
    """

    def __init__(self, obs_shape: tuple[int, ...], action: ActionSpec, cfg: NetworkConfig):
        super().__init__(name="actor_critic")
        self.cfg = cfg
        self.head = ActionHead(action)
        ortho = cfg.ortho_init
        if cfg.shared_encoder:
            self.encoder = mlp(cfg.hidden_sizes, cfg.activation, ortho=ortho, name="encoder")
            self.pi_body = self.vf_body = None
        else:
            self.encoder = None
            self.pi_body = mlp(cfg.hidden_sizes, cfg.activation, ortho=ortho, name="pi")
            self.vf_body = mlp(cfg.hidden_sizes, cfg.activation, ortho=ortho, name="vf")
        self.pi_head = linear(self.head.param_dim, 0.01, ortho=ortho, name="pi_head")
        self.vf_head = linear(1, 1.0, ortho=ortho, name="vf_head")
        self.log_std = None
        if action.kind == "box":
            self.log_std = tf.Variable(np.full(action.shape, cfg.log_std_init, np.float32), name="log_std")
        grad_from = parse_grad_from(cfg.encoder_grad_from)
        self.actor_trains_encoder = "actor" in grad_from
        self.critic_trains_encoder = "critic" in grad_from
        self(tf.zeros((1, *obs_shape), tf.float32))  # build every layer

    def _features(self, obs: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        x = preprocess(obs)
        if self.encoder is None:
            return self.pi_body(x), self.vf_body(x)
        feat = self.encoder(x)
        # The head whose loss must not train the shared encoder reads it severed.
        pi_in = feat if self.actor_trains_encoder else sever(feat)
        vf_in = feat if self.critic_trains_encoder else sever(feat)
        return pi_in, vf_in

    def __call__(self, obs: tf.Tensor):
        """Returns (action distribution, value [batch])."""
        pi_in, vf_in = self._features(obs)
        return self.distribution_from(pi_in), tf.squeeze(self.vf_head(vf_in), -1)

    def distribution_from(self, pi_features: tf.Tensor):
        return self.head.distribution(self.pi_head(pi_features), self.log_std)

    def distribution(self, obs: tf.Tensor):
        if self.encoder is None:  # the act step computes the policy branch alone
            return self.distribution_from(self.pi_body(preprocess(obs)))
        return self.distribution_from(self._features(obs)[0])

    def value(self, obs: tf.Tensor) -> tf.Tensor:
        return tf.squeeze(self.vf_head(self._features(obs)[1]), -1)

    def modules(self) -> dict[str, list]:
        """Named variable groups: what the optimizer, freezing and the flow audit act on."""
        actor = [] if self.pi_body is None else list(self.pi_body.trainable_variables)
        actor += list(self.pi_head.trainable_variables)
        if self.log_std is not None:
            actor.append(self.log_std)
        critic = [] if self.vf_body is None else list(self.vf_body.trainable_variables)
        critic += list(self.vf_head.trainable_variables)
        out = {"actor": actor, "critic": critic}
        if self.encoder is not None:
            out["encoder"] = list(self.encoder.trainable_variables)
        return out
