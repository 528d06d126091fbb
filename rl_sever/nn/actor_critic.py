"""The on-policy actor-critic: separate MLP bodies, or one shared encoder (MLP, CNN for
images, or the user's own model) in front of the policy and value heads."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from rl_sever.config.run import NetworkConfig, parse_grad_from
from rl_sever.config.spaces import ActionSpec
from rl_sever.isolation import sever
from rl_sever.nn.distributions import ActionHead
from rl_sever.nn.encoders import flat_obs, is_image, make_encoder, zero_obs
from rl_sever.nn.layers import DenseStack
from rl_sever.nn.recurrent import RecurrentCore


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
        if (cfg.shared_encoder or user_encoder is not None or is_image(obs_shape, obs_dtype)
                or isinstance(obs_shape, dict)):  # a Dict observation: one encoder per key
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
        # A policy with memory: one LSTM/GRU layer on the features, shared by both heads (its
        # state: rl_sever.nn.recurrent); without an encoder the heads keep their hidden layers.
        self.core = None
        if getattr(cfg, "recurrent", "none") != "none":
            self.core = RecurrentCore(in_dim, cfg.recurrent_size, cfg.recurrent, name="recurrent")
            in_dim = cfg.recurrent_size
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
        zeros = zero_obs(obs_shape, obs_dtype)
        if self.core is None:  # build every layer
            self(zeros)
        else:
            self.step(zeros, self.initial_state(1))

    @property
    def state_dim(self) -> int:
        """Width of the recurrent state (0: a feed-forward policy)."""
        return 0 if self.core is None else self.core.state_dim

    def initial_state(self, n: int) -> tf.Tensor:
        """The state that starts an episode, for `n` envs."""
        return tf.zeros([n, self.state_dim])

    def _trunk(self, obs: tf.Tensor) -> tf.Tensor:
        """What the recurrent core or the heads read: encoder features or the flat obs."""
        return flat_obs(obs) if self.encoder is None else self.encoder(obs)

    def _heads_in(self, feat: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """The policy's and the value head's inputs from the shared trunk's output."""
        if self.encoder is None and self.core is None:
            return feat, feat
        # The head whose loss must not train the shared encoder (and core) reads it severed.
        pi_in = feat if self.actor_trains_encoder else sever(feat)
        vf_in = feat if self.critic_trains_encoder else sever(feat)
        return pi_in, vf_in

    def _features(self, obs: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return self._heads_in(self._trunk(obs))

    def _outputs(self, feat: tf.Tensor, mask):
        pi_in, vf_in = self._heads_in(feat)
        return self.distribution_from(pi_in, mask), tf.squeeze(self.vf(vf_in), -1)

    def step(self, obs: tf.Tensor, state: tf.Tensor, mask: tf.Tensor | None = None):
        """One time step of a recurrent policy: (distribution, value [B], new state)."""
        out, state = self.core.step(self._trunk(obs), state)
        return (*self._outputs(out, mask), state)

    def sequence(self, obs: tf.Tensor, state0: tf.Tensor, starts: tf.Tensor,
                 mask: tf.Tensor | None = None):
        """Sequences of a recurrent policy: `obs` [C * L, ...] (sequence-major), `state0`
        [C, state_dim], `starts` [C, L] (the state is zeroed before those steps). Returns
        (distribution, value [C * L]), back-propagating through time within each sequence."""
        feat = self._trunk(obs)
        seq = tf.reshape(feat, [-1, starts.shape[1] or tf.shape(starts)[1], feat.shape[-1]])
        out = self.core.sequence(seq, state0, starts)
        return self._outputs(tf.reshape(out, [-1, self.core.size]), mask)

    def next_values(self, obs: tf.Tensor, next_obs: tf.Tensor, state0: tf.Tensor,
                    starts: tf.Tensor) -> tf.Tensor:
        """V of each reached observation `next_obs` [N, T, ...] given the state after `obs`
        (the memory its episode had when it got there; a true final observation included),
        replaying the rollout [N, T, ...] from `state0` [N, state_dim]. Returns [N, T]."""
        shape = tf.shape(starts)
        flat = lambda x: tf.nest.map_structure(  # noqa: E731  (a Dict observation: each key)
            lambda v: tf.reshape(v, tf.concat([[-1], tf.shape(v)[2:]], 0)), x)
        feat = self._trunk(flat(obs))
        seq = tf.reshape(feat, [-1, starts.shape[1] or shape[1], feat.shape[-1]])
        _, states = self.core.sequence(seq, state0, starts, return_states=True)
        out, _ = self.core.step(self._trunk(flat(next_obs)), tf.reshape(states, [-1, self.state_dim]))
        return tf.reshape(tf.squeeze(self.vf(self._heads_in(out)[1]), -1), shape)

    def __call__(self, obs: tf.Tensor, mask: tf.Tensor | None = None):
        """Returns (action distribution, value [batch]); `mask` (bool [batch, mask_dim]) gives
        the forbidden actions probability zero."""
        self._feed_forward("output")
        return self._outputs(self._trunk(obs), mask)

    def distribution_from(self, pi_features: tf.Tensor, mask: tf.Tensor | None = None):
        return self.head.distribution(self.pi(pi_features), self.log_std, mask)

    def _feed_forward(self, what: str) -> None:
        if self.core is not None:
            raise ValueError(f"a recurrent policy's {what} depends on its state: use "
                             "step(obs, state) or sequence(obs, state0, starts)")

    def distribution(self, obs: tf.Tensor, mask: tf.Tensor | None = None):
        self._feed_forward("distribution")
        return self.distribution_from(self._features(obs)[0], mask)

    def value(self, obs: tf.Tensor) -> tf.Tensor:
        self._feed_forward("value")
        return tf.squeeze(self.vf(self._features(obs)[1]), -1)

    def modules(self) -> dict[str, list]:
        """Named variable groups: what the optimizer, freezing and the flow audit act on."""
        actor = list(self.pi.weights) + ([self.log_std] if self.log_std is not None else [])
        out = {"actor": actor, "critic": list(self.vf.weights)}
        if self.encoder is not None:
            out["encoder"] = self.encoder.weights
        if self.core is not None:
            out["recurrent"] = list(self.core.weights)
        return out
