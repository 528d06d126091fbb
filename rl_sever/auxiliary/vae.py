"""VAE auxiliary loss: encoder features -> latent Normal -> decoder reconstructs the observation.

loss = recon + beta * KL(q(z|s) || N(0, I)), with
  recon: squared error per observation element (images scaled to [0, 1]), averaged;
  KL:    tfp.distributions.kl_divergence, summed over latent dims, averaged over the batch.
Trains the shared encoder (when the agent lets auxiliary losses train it) and its own networks,
module "decoder" (latent head + decoder); never the actor or critic heads.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from rl_sever.auxiliary.base import AuxContext, AuxiliaryModule
from rl_sever.errors import ConfigError
from rl_sever.nn.encoders import scale_obs
from rl_sever.nn.layers import DenseStack

tfd = tfp.distributions


class VAE(AuxiliaryModule):
    name = "vae"
    components = ("recon", "kl")

    def __init__(self, feature_dim, obs_shape, obs_dtype, action, cfg):
        super().__init__(feature_dim, obs_shape, obs_dtype, action, cfg)
        if isinstance(self.obs_shape, dict):
            raise ConfigError("the vae auxiliary reconstructs one observation array; Dict "
                              "observations are not supported (use reward or inverse)")
        self.image = len(self.obs_shape) == 3
        self.latent_head = keras.layers.Dense(2 * cfg.latent_dim, name="vae_latent")
        self.latent_head.build((None, feature_dim))
        if self.image:
            h, w, c = self.obs_shape
            gh, gw = -(-h // 4), -(-w // 4)
            self.decoder = keras.Sequential([
                keras.Input((cfg.latent_dim,)),
                keras.layers.Dense(gh * gw * 32, activation="relu", name="vae_dec_proj"),
                keras.layers.Reshape((gh, gw, 32)),
                keras.layers.Conv2DTranspose(32, 3, strides=2, padding="same", activation="relu",
                                             name="vae_dec_up0"),
                keras.layers.Conv2DTranspose(c, 3, strides=2, padding="same", activation="sigmoid",
                                             name="vae_dec_up1")], name="vae_decoder")
        else:
            dim = int(np.prod(self.obs_shape))
            self.decoder = DenseStack(cfg.latent_dim, cfg.hidden_sizes, dim, "relu", init="glorot",
                                      name="vae_decoder")

    def modules(self):
        return {"decoder": list(self.latent_head.trainable_variables)
                + list(self.decoder.trainable_variables)}

    def posterior(self, features: tf.Tensor) -> tfd.Normal:
        mean, log_std = tf.split(self.latent_head(features), 2, axis=-1)
        return tfd.Normal(mean, tf.exp(tf.clip_by_value(log_std, -10.0, 2.0)))

    def reconstruct(self, z: tf.Tensor) -> tf.Tensor:
        out = self.decoder(z)
        if self.image and tuple(out.shape[1:3]) != self.obs_shape[:2]:
            out = out[:, : self.obs_shape[0], : self.obs_shape[1]]  # undo the rounding up to /4
        return out

    def loss(self, ctx: AuxContext):
        q = self.posterior(ctx.features)
        z = q.sample(seed=ctx.seed)  # reparameterised: gradient reaches the posterior
        target = scale_obs(ctx.obs)
        recon_x = self.reconstruct(z)
        if not self.image:
            target = tf.reshape(target, [tf.shape(target)[0], -1])
        recon = tf.reduce_mean(tf.square(recon_x - target))
        prior = tfd.Normal(tf.zeros_like(q.loc), tf.ones_like(q.scale))
        kl = tf.reduce_mean(tf.reduce_sum(tfd.kl_divergence(q, prior), axis=-1))
        return recon + self.cfg.beta * kl, {"recon": recon, "kl": kl}
