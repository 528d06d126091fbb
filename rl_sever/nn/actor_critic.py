"""The on-policy actor-critic: separate MLP bodies, or one shared encoder (MLP, CNN for
images, or the user's own model) in front of the policy and value heads."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from rl_sever.config.run import NetworkConfig, parse_grad_from
from rl_sever.config.spaces import ActionSpec
from rl_sever.isolation import sever
from rl_sever.nn.distributions import ActionHead
from rl_sever.nn.encoders import flat_obs, is_image, make_encoder
from rl_sever.nn.layers import linear, mlp


class ActorCritic(tf.Module):
    """Policy and value networks.

    Modules (for freezing, the optimizer and the flow audit): "actor" (policy body, head and
    log-std), "critic" (value body and head) and, with a shared encoder, "encoder". The encoder
    is shared when `shared_encoder` is set, for image observations (a CNN) and when the user
    supplies one (`user_encoder`, rl_sever.nn.encoders.UserEncoder). A shared encoder is trained
    only by the losses named in `encoder_grad_from`; the other head reads its features through
    `sever`, so its loss cannot move the encoder.
    """

    def __init__(self, obs_shape: tuple[int, ...], action: ActionSpec, cfg: NetworkConfig,
                 *, obs_dtype=tf.float32, user_encoder=None):
        super().__init__(name="actor_critic")
        self.cfg = cfg
        self.head = ActionHead(action)
        ortho = cfg.ortho_init
        if cfg.shared_encoder or user_encoder is not None or is_image(obs_shape, obs_dtype):
            # An MLP encoder is the hidden layers; heads read its last width.
            self.encoder = make_encoder(obs_shape, obs_dtype, cfg.encoder, user=user_encoder,
                                        sizes=cfg.hidden_sizes, activation=cfg.activation,
                                        channels=cfg.cnn_channels, feature_dim=cfg.feature_dim,
                                        ortho=ortho, name="encoder")
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
        self(tf.zeros((1, *obs_shape), obs_dtype))  # build every layer

    def _features(self, obs: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        if self.encoder is None:
            x = flat_obs(obs)
            return self.pi_body(x), self.vf_body(x)
        feat = self.encoder(obs)
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
            return self.distribution_from(self.pi_body(flat_obs(obs)))
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
            out["encoder"] = self.encoder.weights
        return out
