"""MountainCarContinuous-v0 (gymnasium.envs.classic_control.continuous_mountain_car) in TF."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from envs.tfnative.mountain_car import MAX_POSITION, MAX_SPEED, MIN_POSITION, MountainCar

MIN_ACTION = -1.0
MAX_ACTION = 1.0
GOAL_POSITION = 0.45
GOAL_VELOCITY = 0.0
POWER = 0.0015


class MountainCarContinuous(MountainCar):
    """MountainCarContinuous-v0: physics [position, velocity] (float32), action force in [-1, 1].

    Reward -0.1 * action^2 per step, using the UNclipped action as Gymnasium does, plus 100
    on reaching position >= 0.45; truncates after 999 steps.
    """

    name = "MountainCarContinuous-v0"
    n_actions = None
    action_low = np.array([MIN_ACTION], dtype=np.float32)
    action_high = np.array([MAX_ACTION], dtype=np.float32)
    physics_dtype = tf.float32  # Gymnasium stores this env's state as float32 after each step
    default_max_episode_steps = 999
    reward_threshold = 90.0

    def _dynamics(self, physics, action):
        position, velocity = tf.unstack(physics, axis=1)
        a = tf.cast(action[:, 0], physics.dtype)
        force = tf.clip_by_value(a, MIN_ACTION, MAX_ACTION)
        # Gymnasium keeps this state in float32 but takes math.cos (double) of the float32
        # 3 * position; doing the same keeps the two within float32 rounding of each other.
        slope = tf.cast(0.0025 * tf.cos(tf.cast(3 * position, tf.float64)), physics.dtype)
        velocity = velocity + (force * POWER - slope)
        velocity = tf.clip_by_value(velocity, -MAX_SPEED, MAX_SPEED)
        position = tf.clip_by_value(position + velocity, MIN_POSITION, MAX_POSITION)
        at_wall = tf.equal(position, MIN_POSITION) & (velocity < 0)
        velocity = tf.where(at_wall, tf.zeros_like(velocity), velocity)
        terminated = (position >= GOAL_POSITION) & (velocity >= GOAL_VELOCITY)
        reward = 100.0 * tf.cast(terminated, physics.dtype) - tf.square(a) * 0.1
        return tf.stack([position, velocity], axis=1), tf.cast(reward, tf.float32), terminated
