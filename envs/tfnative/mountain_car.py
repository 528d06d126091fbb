"""MountainCar-v0 (gymnasium.envs.classic_control.mountain_car) as batched TF functions."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from envs.tfnative.base import TFEnv, uniform

MIN_POSITION = -1.2
MAX_POSITION = 0.6
MAX_SPEED = 0.07
GOAL_POSITION = 0.5
GOAL_VELOCITY = 0.0
FORCE = 0.001
GRAVITY = 0.0025


class MountainCar(TFEnv):
    """MountainCar-v0: physics [position, velocity] (float64), actions {0: left, 1: none, 2: right}.

    Reward -1 per step; terminates at position >= 0.5 (velocity >= 0); truncates after 200.
    Hitting the left wall with negative velocity zeroes the velocity.
    """

    name = "MountainCar-v0"
    obs_low = np.array([MIN_POSITION, -MAX_SPEED], dtype=np.float32)
    obs_high = np.array([MAX_POSITION, MAX_SPEED], dtype=np.float32)
    n_actions = 3
    physics_dim = 2
    default_max_episode_steps = 200
    reward_threshold = -110.0

    def _init_physics(self, key, n):
        position = uniform(key, n, 1, -0.6, -0.4, self.physics_dtype)
        return tf.concat([position, tf.zeros_like(position)], axis=1)

    def _dynamics(self, physics, action):
        position, velocity = tf.unstack(physics, axis=1)
        push = tf.cast(tf.cast(action, tf.int32) - 1, physics.dtype)
        velocity = velocity + (push * FORCE + tf.cos(3 * position) * (-GRAVITY))
        velocity = tf.clip_by_value(velocity, -MAX_SPEED, MAX_SPEED)
        position = tf.clip_by_value(position + velocity, MIN_POSITION, MAX_POSITION)
        at_wall = tf.equal(position, MIN_POSITION) & (velocity < 0)
        velocity = tf.where(at_wall, tf.zeros_like(velocity), velocity)
        terminated = (position >= GOAL_POSITION) & (velocity >= GOAL_VELOCITY)
        reward = -tf.ones_like(position, dtype=tf.float32)
        return tf.stack([position, velocity], axis=1), reward, terminated
