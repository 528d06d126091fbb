"""GAE against plain NumPy references, with terminated and truncated episodes in one rollout.

Conventions (rl_sever.objective.advantages.gae): arrays are time-major [T, N]; next_values[t] is V of the
state reached after step t (the true final observation when the episode ended there);
`terminated` drops the bootstrap, `dones` (terminated or truncated) stops the recursion.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from rl_sever.objective.advantages import UNROLL_MAX_STEPS, backwards, gae
from tests.helpers import collect_batch, make_agent


def gae_reference(rewards, values, next_values, terminated, truncated, gamma, lam):
    """The textbook backward recursion, one env and one step at a time."""
    T, N = rewards.shape
    adv = np.zeros((T, N), np.float64)
    for n in range(N):
        last = 0.0
        for t in reversed(range(T)):
            bootstrap = 0.0 if terminated[t, n] else gamma * next_values[t, n]
            delta = rewards[t, n] + bootstrap - values[t, n]
            done = terminated[t, n] or truncated[t, n]
            last = delta + (0.0 if done else gamma * lam * last)
            adv[t, n] = last
    return adv, adv + values


def lambda_one_reference(rewards, values, next_values, terminated, truncated, gamma):
    """lambda = 1, written forwards: the discounted reward sum to the episode's (or the
    rollout's) end, plus the discounted bootstrap unless the episode terminated, minus V."""
    T, N = rewards.shape
    adv = np.zeros((T, N), np.float64)
    for n in range(N):
        for t in range(T):
            ret, k = 0.0, t
            while True:
                ret += gamma ** (k - t) * rewards[k, n]
                if terminated[k, n]:
                    break
                if truncated[k, n] or k == T - 1:
                    ret += gamma ** (k - t + 1) * next_values[k, n]
                    break
                k += 1
            adv[t, n] = ret - values[t, n]
    return adv


def rollout(T=12, N=3, seed=0):
    """Random rewards/values with terminations and truncations inside the rollout.

    Within an episode next_values[t] == values[t + 1] (the next state's value); where an episode
    ends, next_values holds V(final obs), unrelated to values[t + 1] of the next episode.
    """
    rng = np.random.default_rng(seed)
    rewards = rng.normal(size=(T, N))
    values = rng.normal(size=(T, N))
    terminated = np.zeros((T, N), bool)
    truncated = np.zeros((T, N), bool)
    terminated[3, 0] = terminated[9, 0] = True  # two terminations in env 0
    truncated[5, 1] = True  # a truncation in env 1 ...
    terminated[8, 1] = True  # ... then a termination
    truncated[2, 2] = terminated[6, 2] = truncated[T - 1, 2] = True  # env 2: all kinds, incl. last step
    next_values = np.empty((T, N))
    next_values[:-1] = values[1:]
    next_values[-1] = rng.normal(size=N)
    done = terminated | truncated
    next_values[done] = rng.normal(size=done.sum()) * 5.0  # V(final obs)
    return rewards, values, next_values, terminated, truncated


def run_gae(rewards, values, next_values, terminated, truncated, gamma, lam):
    f32 = lambda x: tf.constant(x, tf.float32)  # noqa: E731
    adv, ret = gae(f32(rewards), f32(values), f32(next_values), tf.constant(terminated),
                   tf.constant(terminated | truncated), gamma, lam)
    return adv.numpy(), ret.numpy()


@pytest.mark.parametrize("gamma,lam", [(0.99, 0.95), (0.9, 0.5), (0.98, 0.8), (1.0, 1.0), (0.5, 0.0)])
@pytest.mark.parametrize("seed", [0, 1])
def test_gae_matches_numpy_reference(gamma, lam, seed):
    data = rollout(seed=seed)
    adv, ret = run_gae(*data, gamma, lam)
    ref_adv, ref_ret = gae_reference(*data, gamma, lam)
    assert adv.dtype == ret.dtype == np.float32
    np.testing.assert_allclose(adv, ref_adv, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ret, ref_ret, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("gamma", [0.99, 0.9])
def test_lambda_one_is_discounted_return_with_bootstrap(gamma):
    data = rollout(T=15, N=3, seed=3)
    adv, _ = run_gae(*data, gamma, 1.0)
    np.testing.assert_allclose(adv, lambda_one_reference(*data, gamma), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("gamma", [0.99, 0.7])
def test_lambda_zero_is_one_step_td_error(gamma):
    rewards, values, next_values, terminated, truncated = rollout(seed=4)
    adv, ret = run_gae(rewards, values, next_values, terminated, truncated, gamma, 0.0)
    td = rewards + gamma * next_values * (~terminated) - values
    np.testing.assert_allclose(adv, td, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ret, td + values, rtol=1e-5, atol=1e-5)


def test_hand_computed_single_env():
    # One env, 4 steps: the episode terminates at t=1, the next one is truncated at t=3.
    gamma, lam = 0.5, 0.5
    rewards = np.array([[1.0], [2.0], [3.0], [4.0]])
    values = np.array([[10.0], [20.0], [30.0], [40.0]])
    next_values = np.array([[20.0], [99.0], [40.0], [8.0]])  # 99: V(terminal obs), must be ignored
    terminated = np.array([[False], [True], [False], [False]])
    truncated = np.array([[False], [False], [False], [True]])
    adv, _ = run_gae(rewards, values, next_values, terminated, truncated, gamma, lam)
    # t=3: 4 + 0.5 * 8 - 40 = -32 (truncated: bootstraps from V(final obs) = 8)
    # t=2: 3 + 0.5 * 40 - 30 = -7, + 0.25 * -32 = -15
    # t=1: 2 - 20 = -18 (terminated: no bootstrap, no recursion)
    # t=0: 1 + 0.5 * 20 - 10 = 1, + 0.25 * -18 = -3.5
    np.testing.assert_array_equal(adv[:, 0], [-3.5, -18.0, -15.0, -32.0])


def test_no_leakage_across_episode_boundaries():
    rewards, values, next_values, terminated, truncated = rollout(seed=5)
    base, _ = run_gae(rewards, values, next_values, terminated, truncated, 0.99, 0.95)
    # Change everything after env 1's truncation (t=5) in env 1: steps 0..5 must not move.
    r2, v2, nv2 = rewards.copy(), values.copy(), next_values.copy()
    r2[6:, 1] += 100.0
    v2[6:, 1] -= 50.0
    nv2[6:, 1] += 7.0
    changed, _ = run_gae(r2, v2, nv2, terminated, truncated, 0.99, 0.95)
    np.testing.assert_array_equal(changed[:6, 1], base[:6, 1])
    assert not np.allclose(changed[6:, 1], base[6:, 1])
    # The other envs are untouched.
    np.testing.assert_array_equal(changed[:, [0, 2]], base[:, [0, 2]])


def test_truncated_bootstraps_from_final_value_and_terminated_does_not():
    rewards, values, next_values, terminated, truncated = rollout(seed=6)
    gamma, lam = 0.9, 0.8
    base, _ = run_gae(rewards, values, next_values, terminated, truncated, gamma, lam)

    # Truncated at t=5 in env 1: V(final obs) enters with weight gamma at t=5 and
    # (gamma * lam)^k * gamma k steps earlier in the same episode (which starts at t=0).
    nv = next_values.copy()
    nv[5, 1] += 1.0
    moved, _ = run_gae(rewards, values, nv, terminated, truncated, gamma, lam)
    expected = np.zeros(12)
    expected[:6] = gamma * (gamma * lam) ** np.arange(5, -1, -1)
    np.testing.assert_allclose(moved[:, 1] - base[:, 1], expected, rtol=1e-4, atol=1e-5)

    # Terminated at t=3 in env 0: the value of the terminal observation is irrelevant.
    nv = next_values.copy()
    nv[3, 0] += 1000.0
    same, _ = run_gae(rewards, values, nv, terminated, truncated, gamma, lam)
    np.testing.assert_array_equal(same, base)


def test_gae_compiles_with_tensor_hyperparameters():
    rewards, values, next_values, terminated, truncated = rollout(seed=7)
    fn = tf.function(gae)
    gamma, lam = tf.Variable(0.97), tf.Variable(0.9)
    args = [tf.constant(x, tf.float32) for x in (rewards, values, next_values)]
    adv, _ = fn(*args, tf.constant(terminated), tf.constant(terminated | truncated), gamma, lam)
    ref, _ = gae_reference(rewards, values, next_values, terminated, truncated, 0.97, 0.9)
    np.testing.assert_allclose(adv.numpy(), ref, rtol=1e-5, atol=1e-5)


def test_collector_marks_episode_ends_and_keeps_true_final_obs(tiny_md_env_id):
    """The rollout the agent trains on: at an episode end next_obs is the true final
    observation (step counter = episode length), not the next episode's reset observation,
    and truncation (TimeLimit) is a done without termination."""
    agent = make_agent("a2c", tiny_md_env_id, n_steps=40)
    try:
        batch = collect_batch(agent)
    finally:
        agent.close()
    obs, next_obs = batch["obs"], batch["next_obs"]
    dones, terminated = batch["dones"], batch["terminated"]
    truncated = dones & ~terminated
    assert terminated.any() and truncated.any()
    # Within an episode next_obs[t] is obs[t + 1]; after a done obs[t + 1] is a reset obs.
    cont = ~dones[:-1]
    np.testing.assert_array_equal(next_obs[:-1][cont], obs[1:][cont])
    assert np.all(obs[1:][dones[:-1]][:, 0] == 0.0)
    assert np.all(next_obs[dones][:, 0] > 0.0)
    # Truncated episodes ended at the horizon; their final obs carries the full step count.
    np.testing.assert_allclose(next_obs[truncated][:, 0], 1.0)
    # Consecutive step counters inside episodes: no reset transition was recorded.
    np.testing.assert_allclose(next_obs[..., 0] - obs[..., 0], 0.1, rtol=1e-5)


@pytest.mark.parametrize("steps", [1, 5, UNROLL_MAX_STEPS])
def test_the_unrolled_recursion_gives_the_scans_bits_and_has_no_loop(steps):
    rng = np.random.default_rng(steps)
    deltas = tf.constant(rng.normal(size=(steps, 8)), tf.float32)
    decay = tf.constant(rng.uniform(0.0, 0.99, size=(steps, 8)) * (rng.random((steps, 8)) > 0.1),
                        tf.float32)
    spec = tf.TensorSpec([steps, 8], tf.float32)
    traced = {unroll: tf.function(lambda d, c, u=unroll: backwards(d, c, u), autograph=False)
              .get_concrete_function(spec, spec) for unroll in (True, False)}
    np.testing.assert_array_equal(traced[True](deltas, decay).numpy(),
                                  traced[False](deltas, decay).numpy())
    loops = {u: [op.type for op in f.graph.get_operations() if "While" in op.type]
             for u, f in traced.items()}
    assert loops[True] == [] and loops[False] != []


def test_long_or_unknown_rollouts_keep_the_scan():
    for shape in ([UNROLL_MAX_STEPS + 1, 2], [None, 2]):
        spec = tf.TensorSpec(shape, tf.float32)
        graph = tf.function(backwards, autograph=False).get_concrete_function(spec, spec).graph
        assert any("While" in op.type for op in graph.get_operations())
