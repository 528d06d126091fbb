"""Pendulum-v1 (gymnasium.envs.classic_control.pendulum) as batched TF functions."""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from envs.tfnative.base import TFEnv, uniform

MAX_SPEED = 8.0
MAX_TORQUE = 2.0
DT = 0.05
G = 10.0
M = 1.0
L = 1.0


def angle_normalize(x: tf.Tensor) -> tf.Tensor:
    """Map an angle to [-pi, pi) with a floor-mod, like Gymnasium's ``angle_normalize``."""
    return tf.math.floormod(x + math.pi, 2 * math.pi) - math.pi


class Pendulum(TFEnv):
    """Pendulum-v1: physics [theta, theta_dot] (float64), obs [cos, sin, theta_dot] (float32).

    Torque is clipped to [-2, 2]; reward -(angle_normalize(theta)^2 + 0.1 theta_dot^2
    + 0.001 u^2) from the pre-step state; never terminates, truncates after 200 steps.
    theta is left unwrapped in the state, as in Gymnasium.

    The physics runs in float64 like Gymnasium's: passing near the upright (unstable)
    position amplifies rounding, so a float32 state drifts by ~1e-2 within 200 steps.
    """

    name = "Pendulum-v1"
    obs_high = np.array([1.0, 1.0, MAX_SPEED], dtype=np.float32)
    obs_low = -obs_high
    action_low = np.array([-MAX_TORQUE], dtype=np.float32)
    action_high = np.array([MAX_TORQUE], dtype=np.float32)
    physics_dim = 2
    default_max_episode_steps = 200

    def _init_physics(self, key, n):
        high = tf.constant([math.pi, 1.0], self.physics_dtype)
        return (uniform(key, n, 2, 0.0, 1.0, self.physics_dtype) * 2.0 - 1.0) * high

    def _dynamics(self, physics, action):
        th, thdot = tf.unstack(physics, axis=1)
        # Gymnasium's action is float32 and numpy keeps u's terms in float32 before adding them
        # to the float64 state; rounding them the same way matters because errors grow fast
        # whenever the pendulum passes near the upright position.
        u = tf.clip_by_value(tf.cast(action[:, 0], tf.float32), -MAX_TORQUE, MAX_TORQUE)
        u_cost = tf.cast(0.001 * tf.square(u), physics.dtype)
        u_acc = tf.cast(3.0 / (M * L**2) * u, physics.dtype)
        costs = tf.square(angle_normalize(th)) + 0.1 * tf.square(thdot) + u_cost
        newthdot = thdot + (3 * G / (2 * L) * tf.sin(th) + u_acc) * DT
        newthdot = tf.clip_by_value(newthdot, -MAX_SPEED, MAX_SPEED)
        newth = th + newthdot * DT
        reward = tf.cast(-costs, tf.float32)
        return tf.stack([newth, newthdot], axis=1), reward, tf.zeros_like(th, dtype=tf.bool)

    def _observe(self, physics):
        th, thdot = tf.unstack(physics, axis=1)
        return tf.cast(tf.stack([tf.cos(th), tf.sin(th), thdot], axis=1), tf.float32)
