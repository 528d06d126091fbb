"""Partially observable (NoVel), action-masked and goal-conditioned (bit flipping) envs."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode
from gymnasium.wrappers import TimeLimit

from envs import make_vec_env
from envs.bit_flipping import BIT_FLIPPING_ID, BitFlippingEnv
from envs.errors import ConfigError
from envs.masked import (
    DISCRETE_ID,
    MULTI_ID,
    InvalidActionPenaltyEnv,
    action_mask_of,
    get_action_masks,
)
from envs.partial import KeepIndices, make_no_vel_env

NO_VEL = [  # (id, base id, kept indices, base episode limit)
    ("NoVel/CartPole-v1", "CartPole-v1", (0, 2), 500),
    ("CartPoleNoVel-v1", "CartPole-v1", (0, 2), 500),
    ("NoVel/Pendulum-v1", "Pendulum-v1", (0, 1), 200),
    ("PendulumNoVel-v1", "Pendulum-v1", (0, 1), 200),
    ("NoVel/LunarLander-v3", "LunarLander-v3", (0, 1, 4, 6, 7), 1000),
    ("LunarLanderNoVel-v3", "LunarLander-v3", (0, 1, 4, 6, 7), 1000),
    ("NoVel/LunarLanderContinuous-v3", "LunarLanderContinuous-v3", (0, 1, 4, 6, 7), 1000),
    ("LunarLanderContinuousNoVel-v3", "LunarLanderContinuous-v3", (0, 1, 4, 6, 7), 1000),
]
SAME_STEP = {"autoreset_mode": AutoresetMode.SAME_STEP}


def checked(env: gym.Env, skip_render_check: bool = False) -> None:
    """gymnasium's check_env passes without a warning (but the one about wrappers)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env, skip_render_check=skip_render_check)
    messages = [str(w.message) for w in caught if "different from the unwrapped" not in
                str(w.message)]
    assert not messages, messages


# ------------------------------------------------------------------ NoVel


@pytest.mark.parametrize("env_id,base_id,keep,limit", NO_VEL)
def test_no_vel_keeps_the_position_components_of_the_base_env(env_id, base_id, keep, limit):
    env, base = gym.make(env_id), gym.make(base_id)
    space, base_space = env.observation_space, base.observation_space
    assert space.shape == (len(keep),) and space.dtype == np.float32
    np.testing.assert_array_equal(space.low, base_space.low[list(keep)])
    np.testing.assert_array_equal(space.high, base_space.high[list(keep)])
    obs, _ = env.reset(seed=3)
    base_obs, _ = base.reset(seed=3)
    np.testing.assert_array_equal(obs, base_obs[list(keep)])
    base.action_space.seed(3)
    for _ in range(30):
        action = base.action_space.sample()
        obs, reward, terminated, truncated, _ = env.step(action)
        base_obs, base_reward, base_terminated, base_truncated, _ = base.step(action)
        assert obs.dtype == np.float32 and obs in space
        np.testing.assert_array_equal(obs, base_obs[list(keep)])
        assert (reward, terminated, truncated) == (base_reward, base_terminated, base_truncated)
        if terminated or truncated:
            break
    env.close()
    base.close()


@pytest.mark.parametrize("env_id,base_id,keep,limit", NO_VEL)
def test_no_vel_keeps_the_base_episode_limit(env_id, base_id, keep, limit):
    env = gym.make(env_id)
    assert env.spec.max_episode_steps == gym.spec(base_id).max_episode_steps == limit
    limits, inner = [], env
    while isinstance(inner, gym.Wrapper):  # exactly one TimeLimit, the base env's
        if isinstance(inner, TimeLimit):
            limits.append(inner._max_episode_steps)
        inner = inner.env
    assert limits == [limit]
    assert gym.spec(env_id).kwargs["env_id"] == base_id


def test_no_vel_pendulum_truncates_after_200_steps():
    env = gym.make("PendulumNoVel-v1")
    env.reset(seed=0)
    steps, truncated = 0, False
    while not truncated:
        _, _, terminated, truncated, _ = env.step(np.zeros(1, np.float32))
        steps += 1
        assert not terminated
    assert steps == 200
    assert gym.make("NoVel/Pendulum-v1", max_episode_steps=7).spec.max_episode_steps == 7


def test_no_vel_passes_kwargs_and_render_mode_to_the_base_env():
    env = gym.make("NoVel/Pendulum-v1", g=5.0, render_mode="rgb_array")
    assert env.unwrapped.g == 5.0
    assert env.render_mode == env.unwrapped.render_mode == "rgb_array"
    lander = gym.make("LunarLanderNoVel-v3", enable_wind=True)
    assert lander.unwrapped.enable_wind
    env.close()
    lander.close()


def test_no_vel_runs_in_a_vector_env_and_passes_check_env():
    env = make_vec_env("CartPoleNoVel-v1", 2, seed=0)
    obs, _ = env.reset()
    assert obs.shape == (2, 2) and obs.dtype == np.float32
    env.close()
    # The render check would open the base env's pygame window ("human"): not ours to test.
    checked(gym.make("NoVel/CartPole-v1"), skip_render_check=True)
    checked(make_no_vel_env("LunarLander-v3", (0, 1, 4, 6, 7)), skip_render_check=True)


def test_keep_indices_rejects_bad_indices():
    for indices in ([], [0, 0], [4], [-1]):
        with pytest.raises(ConfigError):
            KeepIndices(gym.make("CartPole-v1"), indices)
    with pytest.raises(ConfigError):
        KeepIndices(gym.make("BitFlipping-v0"), [0])  # a Dict space


# ------------------------------------------------------------------ action masks


def valid_action(env: InvalidActionPenaltyEnv, mask: np.ndarray, rng) -> np.ndarray | int:
    parts, start = [], 0
    for n in env.nvec:
        parts.append(int(rng.choice(np.flatnonzero(mask[start : start + n]))))
        start += n
    return parts[0] if isinstance(env.action_space, gym.spaces.Discrete) else np.array(parts)


@pytest.mark.parametrize("env_id,mask_dim", [(DISCRETE_ID, 6), (MULTI_ID, 7)])
def test_valid_actions_never_end_the_episode_and_both_mask_sources_agree(env_id, mask_dim):
    env = gym.make(env_id)
    core = env.unwrapped
    rng = np.random.default_rng(0)
    obs, info = env.reset(seed=1)
    masks, rewards, steps, truncated = [info["action_mask"]], set(), 0, False
    while not truncated:
        mask = info["action_mask"]
        assert mask.dtype == bool and mask.shape == (mask_dim,)
        np.testing.assert_array_equal(mask, env.get_wrapper_attr("action_masks")())
        np.testing.assert_array_equal(mask, action_mask_of(env, None))
        np.testing.assert_array_equal(obs[mask_dim:], mask.astype(np.float32))  # observed
        target = np.flatnonzero(obs[:mask_dim]) - core._starts  # the hinted action
        assert mask[core._starts + target].all()
        action = target if rng.random() < 0.5 else valid_action(core, mask, rng)
        good = bool((np.reshape(action, -1) == target).all())
        obs, reward, terminated, truncated, info = env.step(action)
        assert not terminated and reward == (1.0 if good else 0.1)
        rewards.add(reward)
        masks.append(info["action_mask"])
        steps += 1
    assert steps == 100 and rewards == {1.0, 0.1}
    for before, after in zip(masks, masks[1:], strict=False):
        assert not np.array_equal(before, after)  # the mask changes every step
    assert 0.2 < np.mean(masks) < 0.8


@pytest.mark.parametrize("env_id", [DISCRETE_ID, MULTI_ID])
def test_an_invalid_action_terminates_with_minus_100(env_id):
    env = gym.make(env_id)
    core = env.unwrapped
    ended = 0
    for seed in range(20):
        _, info = env.reset(seed=seed)
        mask = info["action_mask"]
        forbidden = np.flatnonzero(~mask[: core.nvec[0]])  # component 0
        if not forbidden.size:
            continue
        if isinstance(env.action_space, gym.spaces.Discrete):
            action = int(forbidden[0])
        else:  # component 0 forbidden, component 1 allowed: still invalid
            action = np.array([forbidden[0], np.flatnonzero(mask[3:])[0]])
        _, reward, terminated, truncated, info = env.step(action)
        assert (reward, terminated, truncated) == (-100.0, True, False)
        assert info["action_mask"].any()
        ended += 1
    assert ended >= 10


def test_multi_discrete_variant_masks_are_concatenated_per_component():
    env = gym.make(MULTI_ID)
    assert isinstance(env.action_space, gym.spaces.MultiDiscrete)
    np.testing.assert_array_equal(env.action_space.nvec, [3, 4])
    assert env.observation_space.shape == (14,)
    _, info = env.reset(seed=0)
    for _ in range(50):
        mask = info["action_mask"]
        assert mask.shape == (7,) and mask[:3].any() and mask[3:].any()
        second = np.flatnonzero(~mask[3:])
        if second.size:  # component 1 forbidden alone also ends the episode
            action = np.array([np.flatnonzero(mask[:3])[0], second[0]])
            _, reward, terminated, _, info = env.step(action)
            assert terminated and reward == -100.0
            _, info = env.reset()
        else:
            _, _, terminated, _, info = env.step(np.array([np.flatnonzero(mask[:3])[0], 0]))
            assert not terminated


@pytest.mark.parametrize("env_id,mask_dim", [(DISCRETE_ID, 6), (MULTI_ID, 7)])
def test_vector_helper_gives_the_masks_of_the_new_observations_across_autoreset(env_id,
                                                                                mask_dim):
    env = gym.make_vec(env_id, num_envs=3, vectorization_mode="sync", vector_kwargs=SAME_STEP)
    core = env.envs[0].unwrapped
    rng = np.random.default_rng(0)
    obs, infos = env.reset(seed=0)
    masks = get_action_masks(env, infos, 3, mask_dim)
    np.testing.assert_array_equal(masks, np.stack(env.call("action_masks")))
    terminations = truncations = 0
    for _ in range(230):
        # sub-env 0 plays valid actions only (truncated at 100), 1 and 2 play at random.
        actions = [valid_action(core, masks[0], rng)] + [env.single_action_space.sample()
                                                          for _ in range(2)]
        actions = np.array(actions)
        obs, _, terminated, truncated, infos = env.step(actions)
        masks = get_action_masks(env, infos, 3, mask_dim)
        assert masks.dtype == bool and masks.shape == (3, mask_dim)
        np.testing.assert_array_equal(masks, np.stack(env.call("action_masks")))
        np.testing.assert_array_equal(masks, obs[:, mask_dim:].astype(bool))  # new obs' masks
        np.testing.assert_array_equal(masks, get_action_masks(env, {}, 3, mask_dim))  # call
        assert not terminated[0]
        terminations += int(terminated.sum())
        truncations += int(truncated.sum())
        ended = terminated | truncated
        if ended.any():
            final = infos["final_info"]  # the last step's own masks are kept there
            assert final["_action_mask"][ended].all()
            np.testing.assert_array_equal(final["action_mask"][ended],
                                          np.stack(infos["final_obs"][ended])[:, mask_dim:] > 0)
    assert terminations >= 20 and truncations >= 2
    env.close()


def test_vector_helper_sources_and_errors():
    env = gym.make_vec(DISCRETE_ID, num_envs=3, vectorization_mode="sync",
                       vector_kwargs=SAME_STEP)
    _, infos = env.reset(seed=0)
    called = np.stack(env.call("action_masks"))
    partial = {"action_mask": infos["action_mask"] & np.array([[True], [False], [True]]),
               "_action_mask": np.array([True, False, True])}
    np.testing.assert_array_equal(get_action_masks(env, partial, 3, 6), called)  # row 1: call
    np.testing.assert_array_equal(get_action_masks(env, None, 3, 6), called)
    with pytest.raises(ConfigError):
        get_action_masks(env, infos, 3, 7)
    env.close()

    plain = gym.make_vec("CartPole-v1", num_envs=2, vectorization_mode="sync",
                         vector_kwargs=SAME_STEP)
    _, infos = plain.reset(seed=0)
    assert get_action_masks(plain, infos, 2, 2) is None
    only_some = {"action_mask": np.array([[True, False], [False, False]]),
                 "_action_mask": np.array([True, False])}
    with pytest.raises(ConfigError, match=r"sub-envs \[1\]"):
        get_action_masks(plain, only_some, 2, 2)
    plain.close()


def test_vector_helper_on_async_envs_and_through_the_factory():
    env = gym.make_vec(DISCRETE_ID, num_envs=2, vectorization_mode="async",
                       vector_kwargs=SAME_STEP)
    _, infos = env.reset(seed=0)
    np.testing.assert_array_equal(get_action_masks(env, {}, 2, 6), infos["action_mask"])
    env.close()
    plain = gym.make_vec("CartPole-v1", num_envs=2, vectorization_mode="async",
                         vector_kwargs=SAME_STEP)
    plain.reset(seed=0)
    assert get_action_masks(plain, {}, 2, 2) is None  # asked without shutting a worker down
    plain.step(np.zeros(2, np.int64))
    plain.close()

    env = make_vec_env(MULTI_ID, 2, seed=0)  # wrapped: call() is the base vector env's
    _, infos = env.reset()
    np.testing.assert_array_equal(get_action_masks(env, {}, 2, 7), infos["action_mask"])
    _, _, _, _, infos = env.step(env.action_space.sample())
    np.testing.assert_array_equal(get_action_masks(env, infos, 2, 7),
                                  get_action_masks(env, {}, 2, 7))
    env.close()


def test_masked_env_arguments_are_checked():
    for kwargs in ({"n_actions": 1}, {"nvec": (3, 1)}, {"p_valid": 1.0}, {"render_mode": "ansi"}):
        with pytest.raises(ConfigError):
            InvalidActionPenaltyEnv(**kwargs)
    env = InvalidActionPenaltyEnv()
    env.reset(seed=0)
    with pytest.raises(ValueError):
        env.step(6)


# ------------------------------------------------------------------ bit flipping


def test_bit_flipping_observations_and_goals():
    env = gym.make(BIT_FLIPPING_ID)
    assert env.action_space == gym.spaces.Discrete(10)
    assert set(env.observation_space.spaces) == {"observation", "achieved_goal", "desired_goal"}
    obs, info = env.reset(seed=0)
    assert not info["is_success"]
    for value in obs.values():
        assert value.shape == (10,) and value.dtype == np.float32 and set(value) <= {0.0, 1.0}
    np.testing.assert_array_equal(obs["observation"], obs["achieved_goal"])
    assert obs in env.observation_space
    for n_bits in (1, 2):  # the goal is never the start state
        small = gym.make(BIT_FLIPPING_ID, n_bits=n_bits)
        for seed in range(100):
            obs, _ = small.reset(seed=seed)
            assert not np.array_equal(obs["achieved_goal"], obs["desired_goal"])


def test_bit_flipping_success_terminates_and_time_limit_truncates():
    env = gym.make(BIT_FLIPPING_ID, n_bits=8)
    obs, _ = env.reset(seed=4)
    wrong = np.flatnonzero(obs["achieved_goal"] != obs["desired_goal"])
    for k, bit in enumerate(wrong):
        obs, reward, terminated, truncated, info = env.step(int(bit))
        last = k == len(wrong) - 1
        assert (reward, terminated, info["is_success"]) == ((0.0, True, True) if last
                                                            else (-1.0, False, False))
    np.testing.assert_array_equal(obs["achieved_goal"], obs["desired_goal"])

    env = gym.make(BIT_FLIPPING_ID, n_bits=8, max_steps=3)
    obs, _ = env.reset(seed=4)
    same = int(np.flatnonzero(obs["achieved_goal"] == obs["desired_goal"])[0])
    ends = [env.step(same)[2:4] for _ in range(3)]  # flips a right bit back and forth
    assert ends == [(False, False), (False, False), (False, True)]
    assert gym.make(BIT_FLIPPING_ID, n_bits=6).unwrapped.max_steps == 6


def test_bit_flipping_compute_reward_matches_step_rewards():
    env = gym.make(BIT_FLIPPING_ID, n_bits=3)
    env.action_space.seed(0)
    achieved, desired, rewards = [], [], []
    obs, _ = env.reset(seed=0)
    for _ in range(300):
        obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        achieved.append(obs["achieved_goal"])
        desired.append(obs["desired_goal"])
        rewards.append(reward)
        if terminated or truncated:
            obs, _ = env.reset()
    achieved, desired, rewards = np.array(achieved), np.array(desired), np.array(rewards)
    assert {0.0, -1.0} == set(rewards)
    batch = env.unwrapped.compute_reward(achieved, desired, [{}] * len(rewards))
    assert batch.dtype == np.float32 and batch.shape == rewards.shape
    np.testing.assert_array_equal(batch, rewards)
    for a, d, r in zip(achieved[:20], desired[:20], rewards[:20], strict=True):
        single = env.unwrapped.compute_reward(a, d, {})
        assert np.ndim(single) == 0 and single.dtype == np.float32 and single == r
    relabelled = env.unwrapped.compute_reward(achieved, achieved, None)  # HER: goal = achieved
    np.testing.assert_array_equal(relabelled, np.zeros(len(rewards), np.float32))
    nested = env.unwrapped.compute_reward(achieved.reshape(3, 100, 3), desired.reshape(3, 100, 3),
                                          None)
    np.testing.assert_array_equal(nested, rewards.reshape(3, 100))


def test_bit_flipping_continuous_flips_the_positive_components():
    env = gym.make(BIT_FLIPPING_ID, n_bits=6, continuous=True)
    assert env.action_space == gym.spaces.Box(-1.0, 1.0, (6,), np.float32)
    obs, _ = env.reset(seed=2)
    start = obs["achieved_goal"].copy()
    obs, reward, terminated, _, _ = env.step(np.array([-1, 0, -0.5, -1, 0, -0.1], np.float32))
    np.testing.assert_array_equal(obs["achieved_goal"], start)  # nothing > 0: no flip
    assert (reward, terminated) == (-1.0, False)
    wrong = obs["achieved_goal"] != obs["desired_goal"]
    obs, reward, terminated, _, info = env.step(np.where(wrong, 0.3, -0.3).astype(np.float32))
    np.testing.assert_array_equal(obs["achieved_goal"], obs["desired_goal"])
    assert (reward, terminated, info["is_success"]) == (0.0, True, True)


def test_bit_flipping_arguments_and_render():
    for kwargs in ({"n_bits": 0}, {"max_steps": 0}, {"render_mode": "human"}):
        with pytest.raises(ConfigError):
            BitFlippingEnv(**kwargs)
    env = gym.make(BIT_FLIPPING_ID, n_bits=4, render_mode="ansi")
    env.reset(seed=0)
    assert env.render().startswith(("0", "1")) and "->" in env.render()
    flat = make_vec_env(BIT_FLIPPING_ID, 2, seed=0)  # the factory flattens the Dict
    assert flat.single_observation_space.shape == (30,)
    flat.close()


# ------------------------------------------------------------------ gymnasium's env checker


@pytest.mark.parametrize("env_id,kwargs", [
    (DISCRETE_ID, {}),
    (DISCRETE_ID, {"n_actions": 3, "p_valid": 0.2}),
    (MULTI_ID, {}),
    (BIT_FLIPPING_ID, {}),
    (BIT_FLIPPING_ID, {"n_bits": 15, "continuous": True}),
    (BIT_FLIPPING_ID, {"n_bits": 4, "render_mode": "ansi"}),
])
def test_check_env_passes(env_id, kwargs):
    checked(gym.make(env_id, **kwargs).unwrapped)  # made: the spec lets it try render modes
