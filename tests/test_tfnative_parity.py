"""TF-native classic-control envs against Gymnasium: specs, resets, step-by-step parity."""

import math

import gymnasium as gym
import numpy as np
import pytest
import tensorflow as tf

from envs import tfnative
from rl_sever.errors import UnknownNameError

NAMES = ["Acrobot-v1", "CartPole-v1", "MountainCar-v0", "MountainCarContinuous-v0", "Pendulum-v1"]
ATOL = 1e-5
N_PARALLEL = 4  # Gymnasium envs stepped side by side, one TF batch row each
N_STEPS = 1000  # per row; several episodes, re-synced at every episode end


# ------------------------------------------------------------------ registry and specs
def test_names_and_get():
    assert tfnative.names() == NAMES
    for name in NAMES:
        env = tfnative.get(name)
        assert env.name == name
        assert isinstance(env, tfnative.TFEnv)
    assert tfnative.get("CartPole").name == "CartPole-v1"  # unversioned, as gym.make allows


def test_unknown_name_suggests_close_names():
    with pytest.raises(UnknownNameError, match="Did you mean: CartPole-v1") as info:
        tfnative.get("cartpole-v1")
    assert isinstance(info.value, KeyError)
    with pytest.raises(KeyError):
        tfnative.make_vec_env("NoSuchEnv-v0", 2)


@pytest.mark.parametrize("name", NAMES)
def test_specs_match_gymnasium(name):
    env, ref = tfnative.get(name), gym.make(name)
    assert env.observation_space() == ref.observation_space
    assert env.action_space() == ref.action_space
    assert env.max_episode_steps == ref.spec.max_episode_steps
    assert env.reward_threshold == ref.spec.reward_threshold
    assert env.obs_shape == ref.observation_space.shape
    assert (env.n_actions is None) == (not isinstance(ref.action_space, gym.spaces.Discrete))


# ----------------------------------------------------------------------------- resets
# (low, high) of Gymnasium's uniform start distribution over the physics state.
RESET_BOUNDS = {
    "CartPole-v1": ([-0.05] * 4, [0.05] * 4),
    "Pendulum-v1": ([-math.pi, -1.0], [math.pi, 1.0]),
    "Acrobot-v1": ([-0.1] * 4, [0.1] * 4),
    "MountainCar-v0": ([-0.6, 0.0], [-0.4, 0.0]),
    "MountainCarContinuous-v0": ([-0.6, 0.0], [-0.4, 0.0]),
}


@pytest.mark.parametrize("name", NAMES)
def test_reset_distribution_matches_gymnasium(name):
    low, high = (np.array(b, np.float64) for b in RESET_BOUNDS[name])
    span = high - low
    # The table itself is checked against Gymnasium's resets.
    ref = gym.make(name).unwrapped
    ref_states = []
    for seed in range(200):
        ref.reset(seed=seed)
        ref_states.append(np.asarray(ref.state, np.float64))
    ref_states = np.array(ref_states)
    assert (ref_states >= low - 1e-7).all() and (ref_states <= high + 1e-7).all()
    assert (ref_states.max(0) - ref_states.min(0) >= 0.8 * span).all()

    env = tfnative.get(name)
    state = env.reset(7, 20_000)
    physics = state.physics.numpy().astype(np.float64)
    assert state.physics.dtype == env.physics_dtype and state.t.dtype == tf.int32
    assert (state.t.numpy() == 0).all()
    assert (physics >= low - 1e-7).all() and (physics <= high + 1e-7).all()
    assert (physics.min(0) <= low + 0.01 * span).all() and (
        physics.max(0) >= high - 0.01 * span
    ).all()
    np.testing.assert_allclose(physics.mean(0), (low + high) / 2, atol=0.02 * span.max())

    again, other = env.reset(7, 20_000), env.reset(8, 20_000)
    np.testing.assert_array_equal(again.physics.numpy(), state.physics.numpy())
    assert not np.array_equal(other.physics.numpy(), state.physics.numpy())
    assert not np.array_equal(state.key.numpy(), tfnative.as_key(7).numpy())


# --------------------------------------------------------------- trajectory parity
def _sync_start(env, ref):
    """Round Gymnasium's start state to the TF physics dtype and use it on both sides."""
    physics = np.asarray(ref.unwrapped.state, dtype=env.physics_dtype.as_numpy_dtype)
    ref.unwrapped.state = physics.copy()
    return physics


def _actions(env, policy, obs, rng):
    if env.is_discrete:
        actions = rng.integers(0, env.n_actions, size=N_PARALLEL)
    else:
        actions = rng.uniform(env.action_low, env.action_high, (N_PARALLEL, 1)).astype(np.float32)
    if policy == "pump":
        # Push along the velocity most of the time, so the car reaches the goal and the
        # termination and goal-bonus branches are exercised (random actions never get there).
        greedy = rng.random(N_PARALLEL) < 0.7
        push = obs[:, 1] > 0
        if env.is_discrete:
            actions = np.where(greedy, np.where(push, 2, 0), actions)
        else:
            actions = np.where(greedy[:, None], np.where(push, 1.0, -1.0)[:, None], actions)
            actions = actions.astype(np.float32)
    return actions


@pytest.mark.parametrize(
    "name, policy",
    [(name, "random") for name in NAMES]
    + [("MountainCar-v0", "pump"), ("MountainCarContinuous-v0", "pump")],
)
def test_trajectory_parity_with_gymnasium(name, policy):
    env = tfnative.get(name)
    step = tf.function(
        env.step, input_signature=[env.state_spec(N_PARALLEL), env.action_spec(N_PARALLEL)]
    )
    refs = [gym.make(name) for _ in range(N_PARALLEL)]
    rng = np.random.default_rng(0)
    obs = np.stack([ref.reset(seed=i)[0] for i, ref in enumerate(refs)])
    state = env.from_physics(np.stack([_sync_start(env, ref) for ref in refs]))

    ends, terminations, max_obs_err = 0, 0, 0.0
    for k in range(N_STEPS):
        actions = _actions(env, policy, obs, rng)
        state, tf_obs, tf_reward, tf_term, tf_trunc = step(state, actions)
        tf_obs, tf_reward, tf_term, tf_trunc = (
            x.numpy() for x in (tf_obs, tf_reward, tf_term, tf_trunc)
        )
        restarts = {}
        for i, ref in enumerate(refs):
            obs[i], reward, terminated, truncated, _ = ref.step(actions[i])
            where = f"{name} step {k} env {i}"
            assert (terminated, truncated) == (bool(tf_term[i]), bool(tf_trunc[i])), where
            assert abs(reward - tf_reward[i]) <= ATOL, where
            max_obs_err = max(max_obs_err, float(np.abs(tf_obs[i] - obs[i]).max()))
            assert max_obs_err <= ATOL, f"{where}: |obs diff| = {max_obs_err}"
            if terminated or truncated:
                ends, terminations = ends + 1, terminations + terminated
                obs[i] = ref.reset()[0]
                restarts[i] = _sync_start(env, ref)
        if restarts:
            physics, t = state.physics.numpy(), state.t.numpy()
            for i, start in restarts.items():
                physics[i], t[i] = start, 0
            state = env.from_physics(physics, t)
    # Every row finished at least one episode, and the pumping runs reached the goal.
    assert ends >= N_PARALLEL
    if policy == "pump":
        assert terminations >= N_PARALLEL


# --------------------------------------------------------------- one-step parity
def _random_states(name, rng, n):
    u = rng.uniform
    if name == "CartPole-v1":  # straddles the x and theta termination thresholds
        return np.stack([u(-2.6, 2.6, n), u(-3, 3, n), u(-0.25, 0.25, n), u(-3, 3, n)], 1)
    if name == "Pendulum-v1":  # unwrapped angles, speeds up to the clip
        return np.stack([u(-3 * math.pi, 3 * math.pi, n), u(-8, 8, n)], 1)
    if name == "Acrobot-v1":  # any pose: many start above the goal line
        return np.stack(
            [
                u(-math.pi, math.pi, n),
                u(-math.pi, math.pi, n),
                u(-4 * math.pi, 4 * math.pi, n),
                u(-9 * math.pi, 9 * math.pi, n),
            ],
            1,
        )
    # Mountain cars: the left wall, the goal and both speed clips are all reachable.
    return np.stack([u(-1.2, 0.6, n), u(-0.07, 0.07, n)], 1)


def _random_actions(env, rng, n):
    if env.is_discrete:
        return rng.integers(0, env.n_actions, n)
    # 1.5x the bounds: Gymnasium clips the force but e.g. MountainCarContinuous's reward
    # uses the unclipped action.
    return rng.uniform(1.5 * env.action_low, 1.5 * env.action_high, (n, 1)).astype(np.float32)


@pytest.mark.parametrize("name", NAMES)
def test_single_step_parity_from_random_states(name):
    """Termination, goal, wall and clipping branches, which random episodes rarely reach."""
    n = 2000
    env, ref = tfnative.get(name), gym.make(name).unwrapped
    rng = np.random.default_rng(1)
    states = _random_states(name, rng, n).astype(env.physics_dtype.as_numpy_dtype)
    actions = _random_actions(env, rng, n)
    outputs = tf.function(env.step)(env.from_physics(states), actions)
    tf_obs, tf_reward, tf_term, tf_trunc = (x.numpy() for x in outputs[1:])
    assert not tf_trunc.any()
    for i in range(n):
        ref.state = states[i].copy()
        if name == "CartPole-v1":
            ref.steps_beyond_terminated = None
        obs, reward, terminated, _, _ = ref.step(actions[i])
        assert bool(tf_term[i]) == terminated, f"{name} state {states[i]} action {actions[i]}"
        assert abs(float(tf_reward[i]) - reward) <= ATOL, f"{name} state {states[i]}"
        np.testing.assert_allclose(tf_obs[i], obs, rtol=0, atol=ATOL)
    fraction = tf_term.mean()
    if name == "Pendulum-v1":
        assert fraction == 0
    else:
        assert 0 < fraction < 1


# ------------------------------------------------------------------------ autoreset
def test_step_autoreset_same_step_semantics():
    env = tfnative.get("CartPole-v1")
    # Row 0 leaves the track, row 1 goes on, row 2 hits the 500-step TimeLimit.
    physics = [[2.39, 2.0, 0.0, 0.0], [0.0, 0.0, 0.01, 0.0], [0.0, 0.0, 0.0, 0.0]]
    state = env.from_physics(physics, t=[10, 10, 499], key=3)
    actions = tf.constant([1, 1, 0], tf.int64)
    _, step_obs, step_reward, step_term, step_trunc = env.step(state, actions)
    new, obs, reward, term, trunc, final_obs = env.step_autoreset(state, actions)

    np.testing.assert_array_equal(term, [True, False, False])
    np.testing.assert_array_equal(trunc, [False, False, True])
    np.testing.assert_array_equal(term, step_term)
    np.testing.assert_array_equal(trunc, step_trunc)
    np.testing.assert_array_equal(reward, step_reward)
    np.testing.assert_array_equal(final_obs, step_obs)  # the true last obs of every row
    np.testing.assert_array_equal(obs[1], step_obs[1])
    assert final_obs[0, 0] > 2.4
    for row in (0, 2):  # next episode's first obs, from Gymnasium's reset distribution
        assert np.abs(obs[row]).max() <= 0.05
        assert not np.array_equal(obs[row], final_obs[row])
    np.testing.assert_array_equal(new.t, [0, 11, 0])
    np.testing.assert_array_equal(env.observe(new), obs)
    assert not np.array_equal(new.key, state.key)


@pytest.mark.parametrize("name", NAMES)
def test_in_graph_rollout(name):
    """A whole rollout in one tf.while_loop: runs, ends episodes, never retraces."""
    n, steps = 16, 1000
    env = tfnative.get(name)
    space = env.observation_space()

    @tf.function
    def rollout(key):
        def body(k, state, key, ends, obs_min, obs_max):
            key, sub = tf.unstack(tf.random.experimental.stateless_split(key, 2))
            if env.is_discrete:
                action = tf.random.stateless_uniform([n], sub, 0, env.n_actions, dtype=tf.int64)
            else:
                action = tf.random.stateless_uniform(
                    [n, 1], sub, env.action_low[0], env.action_high[0]
                )
            state, obs, reward, term, trunc, final = env.step_autoreset(state, action)
            tf.debugging.assert_all_finite(reward, "reward")
            seen = tf.concat([obs, final], 0)
            return (
                k + 1,
                state,
                key,
                ends + tf.reduce_sum(tf.cast(term | trunc, tf.int32)),
                tf.minimum(obs_min, tf.reduce_min(seen, 0)),
                tf.maximum(obs_max, tf.reduce_max(seen, 0)),
            )

        state = env.reset(key, n)
        big = tf.fill(env.obs_shape, np.float32(np.inf))
        init = (tf.constant(0), state, state.key, tf.constant(0), big, -big)
        return tf.while_loop(lambda k, *_: k < steps, body, init)[3:]

    ends, obs_min, obs_max = rollout(tf.constant([0, 1], tf.int64))
    rollout(tf.constant([2, 3], tf.int64))
    assert rollout.experimental_get_tracing_count() == 1
    assert int(ends) >= n  # every env finished at least one episode (all TimeLimits < 1000)
    assert (obs_min.numpy() >= space.low).all() and (obs_max.numpy() <= space.high).all()
