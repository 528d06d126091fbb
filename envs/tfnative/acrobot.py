"""Acrobot-v1 (gymnasium.envs.classic_control.acrobot, "book" dynamics) as batched TF functions.

The physics runs in float64 (observations are cast to float32). The double pendulum is
chaotic: integrated in float32, random-action episodes drift from Gymnasium's float64
numpy rk4 by O(1) within 500 steps; in float64 they stay within ~1e-6. The arithmetic
below keeps Gymnasium's operation order for the same reason (Grappler and XLA may still
reassociate some of it, which costs a few ulps per step).
"""

from __future__ import annotations

from math import pi

import numpy as np
import tensorflow as tf

from envs.tfnative.base import TFEnv, uniform

DT = 0.2
LINK_LENGTH_1 = 1.0
LINK_MASS_1 = 1.0
LINK_MASS_2 = 1.0
LINK_COM_POS_1 = 0.5
LINK_COM_POS_2 = 0.5
LINK_MOI = 1.0
MAX_VEL_1 = 4 * pi
MAX_VEL_2 = 9 * pi
G = 9.8


def _dsdt(s: tf.Tensor, a: tf.Tensor) -> tf.Tensor:
    """Time derivative of [theta1, theta2, dtheta1, dtheta2] under torque a (the "book" model)."""
    m1, m2, l1 = LINK_MASS_1, LINK_MASS_2, LINK_LENGTH_1
    lc1, lc2, I1, I2, g = LINK_COM_POS_1, LINK_COM_POS_2, LINK_MOI, LINK_MOI, G
    theta1, theta2, dtheta1, dtheta2 = tf.unstack(s, axis=1)
    sin_theta2 = tf.sin(theta2)
    d1 = m1 * lc1**2 + m2 * (l1**2 + lc2**2 + 2 * l1 * lc2 * tf.cos(theta2)) + I1 + I2
    d2 = m2 * (lc2**2 + l1 * lc2 * tf.cos(theta2)) + I2
    phi2 = m2 * lc2 * g * tf.cos(theta1 + theta2 - pi / 2.0)
    phi1 = (-m2 * l1 * lc2 * tf.square(dtheta2) * sin_theta2
            - 2 * m2 * l1 * lc2 * dtheta2 * dtheta1 * sin_theta2
            + (m1 * lc1 + m2 * l1) * g * tf.cos(theta1 - pi / 2) + phi2)
    ddtheta2 = (a + d2 / d1 * phi1 - m2 * l1 * lc2 * tf.square(dtheta1) * sin_theta2 - phi2) / (
        m2 * lc2**2 + I2 - tf.square(d2) / d1)
    ddtheta1 = -(d2 * ddtheta2 + phi1) / d1
    return tf.stack([dtheta1, dtheta2, ddtheta1, ddtheta2], axis=1)


def _rk4(s: tf.Tensor, a: tf.Tensor) -> tf.Tensor:
    """One classic Runge-Kutta step of length DT (Gymnasium's ``rk4`` over ``[0, dt]``)."""
    dt2 = DT / 2.0
    k1 = _dsdt(s, a)
    k2 = _dsdt(s + dt2 * k1, a)
    k3 = _dsdt(s + dt2 * k2, a)
    k4 = _dsdt(s + DT * k3, a)
    return s + DT / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)


def _wrap(x: tf.Tensor, m: float, M: float) -> tf.Tensor:
    """Gymnasium's ``wrap``: subtract/add the period one at a time, as its while-loops do.

    One rk4 step moves an angle by well under two periods, so two unrolled rounds are exact
    in practice; the floor-based fallback only keeps far-out inputs in range.
    """
    diff = M - m
    for _ in range(2):
        x = tf.where(x > M, x - diff, x)
    x = tf.where(x > M, x - tf.math.ceil((x - M) / diff) * diff, x)
    for _ in range(2):
        x = tf.where(x < m, x + diff, x)
    return tf.where(x < m, x + tf.math.ceil((m - x) / diff) * diff, x)


class Acrobot(TFEnv):
    """Acrobot-v1: physics [theta1, theta2, dtheta1, dtheta2] (float64), actions {0, 1, 2} ->
    torque {-1, 0, +1}; obs [cos t1, sin t1, cos t2, sin t2, dt1, dt2].

    Reward -1 per step, 0 on the terminating step (tip above the bar: -cos t1 - cos(t1 + t2)
    > 1); truncates after 500 steps.
    """

    name = "Acrobot-v1"
    obs_high = np.array([1.0, 1.0, 1.0, 1.0, MAX_VEL_1, MAX_VEL_2], dtype=np.float32)
    obs_low = -obs_high
    n_actions = 3
    physics_dim = 4
    default_max_episode_steps = 500
    reward_threshold = -100.0

    def _init_physics(self, key, n):
        # Gymnasium draws the start state in float64 and stores it as float32.
        return tf.cast(uniform(key, n, 4, -0.1, 0.1, tf.float32), self.physics_dtype)

    def _dynamics(self, physics, action):
        torque = tf.cast(action, physics.dtype) - 1.0
        ns = _rk4(physics, torque)
        theta1, theta2, dtheta1, dtheta2 = tf.unstack(ns, axis=1)
        theta1 = _wrap(theta1, -pi, pi)
        theta2 = _wrap(theta2, -pi, pi)
        dtheta1 = tf.clip_by_value(dtheta1, -MAX_VEL_1, MAX_VEL_1)
        dtheta2 = tf.clip_by_value(dtheta2, -MAX_VEL_2, MAX_VEL_2)
        terminated = -tf.cos(theta1) - tf.cos(theta2 + theta1) > 1.0
        reward = tf.where(terminated, 0.0, -1.0)
        return tf.stack([theta1, theta2, dtheta1, dtheta2], axis=1), reward, terminated

    def _observe(self, physics):
        theta1, theta2, dtheta1, dtheta2 = tf.unstack(physics, axis=1)
        obs = [tf.cos(theta1), tf.sin(theta1), tf.cos(theta2), tf.sin(theta2), dtheta1, dtheta2]
        return tf.cast(tf.stack(obs, axis=1), tf.float32)
