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
from rl_sever.nn.layers import DenseStack


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
            # An MLP encoder is the hidden layers; the heads (one linear layer each) read its
            # last width.
            self.encoder = make_encoder(obs_shape, obs_dtype, cfg.encoder, user=user_encoder,
                                        sizes=cfg.hidden_sizes, activation=cfg.activation,
                                        channels=cfg.cnn_channels, feature_dim=cfg.feature_dim,
                                        ortho=ortho, name="encoder")
            in_dim, hidden = self.encoder.out_dim, []
        else:
            self.encoder = None
            in_dim, hidden = int(np.prod(obs_shape)), cfg.hidden_sizes
        init = "orthogonal" if ortho else "glorot"
        # The policy and the value network: one MLP each (rl_sever.nn.layers.DenseStack).
        self.pi = DenseStack(in_dim, hidden, self.head.param_dim, cfg.activation, init=init,
                             out_gain=0.01, name="pi")
        self.vf = DenseStack(in_dim, hidden, 1, cfg.activation, init=init, out_gain=1.0, name="vf")
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
            return x, x
        feat = self.encoder(obs)
        # The head whose loss must not train the shared encoder reads it severed.
        pi_in = feat if self.actor_trains_encoder else sever(feat)
        vf_in = feat if self.critic_trains_encoder else sever(feat)
        return pi_in, vf_in

    def __call__(self, obs: tf.Tensor):
        """Returns (action distribution, value [batch])."""
        pi_in, vf_in = self._features(obs)
        return self.distribution_from(pi_in), tf.squeeze(self.vf(vf_in), -1)

    def distribution_from(self, pi_features: tf.Tensor):
        return self.head.distribution(self.pi(pi_features), self.log_std)

    def distribution(self, obs: tf.Tensor):
        return self.distribution_from(self._features(obs)[0])

    def value(self, obs: tf.Tensor) -> tf.Tensor:
        return tf.squeeze(self.vf(self._features(obs)[1]), -1)

    def modules(self) -> dict[str, list]:
        """Named variable groups: what the optimizer, freezing and the flow audit act on."""
        actor = list(self.pi.weights) + ([self.log_std] if self.log_std is not None else [])
        out = {"actor": actor, "critic": list(self.vf.weights)}
        if self.encoder is not None:
            out["encoder"] = self.encoder.weights
        return out
