"""CartPole-v1 (gymnasium.envs.classic_control.cartpole) as batched TF functions."""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from envs.tfnative.base import TFEnv, uniform

GRAVITY = 9.8
MASSCART = 1.0
MASSPOLE = 0.1
TOTAL_MASS = MASSPOLE + MASSCART
LENGTH = 0.5  # half the pole's length
POLEMASS_LENGTH = MASSPOLE * LENGTH
FORCE_MAG = 10.0
TAU = 0.02
THETA_THRESHOLD = 12 * 2 * math.pi / 360
X_THRESHOLD = 2.4


class CartPole(TFEnv):
    """CartPole-v1: physics [x, x_dot, theta, theta_dot] (float64), actions {0: left, 1: right}.

    Euler integration, +1 reward on every step including the terminating one, termination
    outside |x| <= 2.4 or |theta| <= 12 deg, truncation after 500 steps.
    """

    name = "CartPole-v1"
    obs_high = np.array([X_THRESHOLD * 2, np.inf, THETA_THRESHOLD * 2, np.inf], dtype=np.float32)
    obs_low = -obs_high
    n_actions = 2
    physics_dim = 4
    default_max_episode_steps = 500
    reward_threshold = 475.0

    def _init_physics(self, key, n):
        return uniform(key, n, 4, -0.05, 0.05, self.physics_dtype)

    def _dynamics(self, physics, action):
        x, x_dot, theta, theta_dot = tf.unstack(physics, axis=1)
        force = tf.cast(tf.where(tf.equal(action, 1), FORCE_MAG, -FORCE_MAG), physics.dtype)
        costheta = tf.cos(theta)
        sintheta = tf.sin(theta)
        # Same operation order as Gymnasium so float rounding stays close.
        temp = (force + POLEMASS_LENGTH * tf.square(theta_dot) * sintheta) / TOTAL_MASS
        thetaacc = (GRAVITY * sintheta - costheta * temp) / (
            LENGTH * (4.0 / 3.0 - MASSPOLE * tf.square(costheta) / TOTAL_MASS))
        xacc = temp - POLEMASS_LENGTH * thetaacc * costheta / TOTAL_MASS
        x = x + TAU * x_dot
        x_dot = x_dot + TAU * xacc
        theta = theta + TAU * theta_dot
        theta_dot = theta_dot + TAU * thetaacc
        terminated = ((x < -X_THRESHOLD) | (x > X_THRESHOLD) | (theta < -THETA_THRESHOLD)
                      | (theta > THETA_THRESHOLD))
        reward = tf.ones_like(x, dtype=tf.float32)
        return tf.stack([x, x_dot, theta, theta_dot], axis=1), reward, terminated
