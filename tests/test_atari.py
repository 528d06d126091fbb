"""Atari (ale-py): both id families, the standard preprocessing, whole-game raw scores, the
training-only wrappers, the Nature CNN and the zoo presets."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest

from envs import make_env, make_vec_env
from envs.atari import AtariSettings, EpisodicLife, FireReset, GameScore
from envs.errors import ConfigError
from envs.factory import episode_stats
from rl_sever.config import presets
from tests.helpers import make_agent

pytest.importorskip("ale_py")


def wrappers_of(env: gym.Env) -> list[type]:
    out = []
    while isinstance(env, gym.Wrapper):
        out.append(type(env))
        env = env.env
    return out


@pytest.mark.parametrize("env_id, sticky", [("ALE/Breakout-v5", 0.25),
                                            ("BreakoutNoFrameskip-v4", 0.0)])
def test_both_id_families_give_stacked_84x84_frames(env_id, sticky):
    env = make_vec_env(env_id, 2, seed=0)
    obs, _ = env.reset()
    assert obs.shape == (2, 84, 84, 4) and obs.dtype == np.uint8
    assert env.single_observation_space.shape == (84, 84, 4)
    ale = env.unwrapped.envs[0].unwrapped  # the raw game: one frame per step
    assert ale._frameskip == 1 and ale.ale.getInt("frame_skip") == 1
    assert ale.ale.getFloat("repeat_action_probability") == pytest.approx(sticky)
    env.close()


def test_training_counts_whole_games_at_their_raw_score():
    env = make_vec_env("ALE/Breakout-v5", 2, seed=1)
    stats = episode_stats(env)
    env.reset()
    learner_ends, clipped = 0, set()
    while stats.total_episodes < 2:
        _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        learner_ends += int((terminated | truncated).sum())
        clipped |= set(np.unique(reward).tolist())
    games = stats.pop_finished()
    # Breakout has 5 lives: each lost life ends the learner's episode, not the game.
    assert learner_ends >= 4 * len(games)
    assert clipped <= {-1.0, 0.0, 1.0}
    assert all(r >= 0 and r == int(r) and n > 50 for r, n in games)
    env.close()


def test_training_only_wrappers_and_the_settings():
    train = wrappers_of(make_vec_env("ALE/Pong-v5", 1, seed=0).unwrapped.envs[0])
    evaluate = wrappers_of(make_env("ALE/Pong-v5", seed=0))
    assert {EpisodicLife, gym.wrappers.TransformReward} <= set(train)
    assert EpisodicLife not in evaluate and gym.wrappers.TransformReward not in evaluate
    assert GameScore in train and GameScore in evaluate and FireReset in train  # Pong has FIRE
    plain = AtariSettings(episodic_life=False, clip_reward=False, fire_reset=False, frame_stack=2)
    env = make_vec_env("ALE/Pong-v5", 1, seed=0, atari=plain)
    assert env.single_observation_space.shape == (84, 84, 2)
    assert not {EpisodicLife, FireReset} & set(wrappers_of(env.unwrapped.envs[0]))
    with pytest.raises(ConfigError, match="frame_skip instead"):
        make_vec_env("ALE/Pong-v5", 1, env_kwargs={"frameskip": 4})
    with pytest.raises(ConfigError, match="atari.frame_stack must be >= 1"):
        AtariSettings(frame_stack=0).validate()


def test_episodic_life_reset_continues_the_game():
    env = make_env("ALE/Breakout-v5", seed=0, training=True)
    env.reset(seed=0)
    lives = env.unwrapped.ale.lives()
    while True:
        *_, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            break
    env.reset()
    assert env.unwrapped.ale.lives() == lives - 1  # the same game, one life less


def test_evaluation_fires_after_a_lost_life_so_a_never_firing_policy_ends_the_game():
    # Breakout waits for FIRE after every lost life: without it, a policy that never fires
    # would stall each evaluation game until the 108k-frame limit.
    env = make_env("ALE/Breakout-v5", seed=0)
    env.reset(seed=0)
    steps, terminated, truncated, info = 0, False, False, {}
    while not (terminated or truncated):
        _, _, terminated, truncated, info = env.step(0)  # NOOP only
        steps += 1
    assert terminated and not truncated and env.unwrapped.ale.lives() == 0
    assert steps < 3000 and info["game"]["l"] >= steps
    env.close()


def test_ppo_and_a2c_train_on_atari_with_the_nature_cnn_and_the_zoo_preset(tmp_path):
    for algo in ("ppo", "a2c"):
        preset = presets.find(algo, "PongNoFrameskip-v4")
        assert preset == presets.find(algo, "ALE/Breakout-v5") and preset["ent_coef"] == 0.01
    assert presets.find("ppo", "ALE/Pong-v5")["clip_schedule"] == "linear"
    assert presets.find("a2c", "ALE/Pong-v5")["vf_coef"] == 0.25
    agent = make_agent("ppo", "ALE/Pong-v5", {"n_steps": 32, "batch_size": 64, "n_epochs": 1},
                       logdir=tmp_path)
    encoder = agent.model.encoder
    assert encoder.kind == "nature" and encoder.out_dim == 512
    convs = [(layer.filters, layer.kernel_size[0], layer.strides[0])
             for layer in encoder.net.layers if hasattr(layer, "filters")]
    assert convs == [(32, 8, 4), (64, 4, 2), (64, 3, 1)]
    agent.learn(64, progress=False)
    config = json.loads((agent.run_dir / "config.json").read_text())
    assert config["config"]["atari"]["frame_skip"] == 4  # the preprocessing is recorded
    agent.close()


@pytest.mark.parametrize("training", [True, False])
def test_ale_vector_env_mode_gives_the_same_observations_and_statistics(training):
    env = make_vec_env("ALE/Breakout-v5", 3, seed=2, vectorization="ale", training=training)
    assert env.single_observation_space == make_vec_env("ALE/Breakout-v5", 1).single_observation_space
    obs, _ = env.reset()
    assert obs.shape == (3, 84, 84, 4) and obs.dtype == np.uint8
    stats, learner_ends, rewards = episode_stats(env), 0, set()
    while stats.total_episodes < 3:
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        learner_ends += int((terminated | truncated).sum())
        rewards |= set(np.unique(reward).tolist())
        if "_final_obs" in info:  # the true last frames of the games that ended, HWC too
            assert info["final_obs"].shape == (3, 84, 84, 4)
    games = stats.pop_finished()
    assert all(r >= 0 and r == int(r) and n > 50 for r, n in games)
    if training:  # lost lives end the learner's episodes; rewards are clipped
        assert learner_ends >= 4 * len(games) and rewards <= {-1.0, 0.0, 1.0}
    else:
        assert learner_ends == len(games)
    env.close()


def test_ale_vector_env_mode_trains_and_refuses_other_envs():
    with pytest.raises(ConfigError, match="vectorization=ale"):
        make_vec_env("CartPole-v1", 2, vectorization="ale")
    agent = make_agent("a2c", "ALE/Pong-v5", {"n_steps": 8, "vectorization": "ale"})
    agent.learn(64, progress=False)
    assert agent.has_updated()
    agent.close()
