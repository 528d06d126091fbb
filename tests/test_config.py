"""Config dataclasses: unknown keys with suggestions, '--set' string coercion, validation, and a
docstring for every field (the CLI help is built from them)."""

from __future__ import annotations

import dataclasses

import pytest

from agents import A2C, PPO, A2CConfig, PPOConfig
from rl_sever.config.fields import field_docs, load_yaml, parse_set, to_dict, update
from rl_sever.config.run import NetworkConfig
from rl_sever.errors import ConfigError


# -- unknown keys -----------------------------------------------------------------------------
@pytest.mark.parametrize("key,suggestion", [
    ("learnig_rate", "learning_rate"),
    ("n_epoch", "n_epochs"),
    ("network.hiden_sizes", "network.hidden_sizes"),
    ("netwrk.hidden_sizes", "network.hidden_sizes"),
    ("network.encoder_grad_form", "network.encoder_grad_from"),
])
def test_unknown_key_suggests_close_names(key, suggestion):
    with pytest.raises(ConfigError) as info:
        update(PPOConfig(), {key: "1"})
    message = str(info.value)
    assert f"unknown config key '{key}'" in message
    assert "Did you mean: " in message
    close = message.split("Did you mean: ")[1].rstrip("?").split(", ")
    assert close[0] == suggestion
    assert len(close) == len(set(close))  # each suggestion once


def test_unknown_key_without_close_name_has_no_suggestion():
    with pytest.raises(ConfigError, match="unknown config key 'zzz'") as info:
        update(A2CConfig(), {"zzz": 1})
    assert "Did you mean" not in str(info.value)


def test_agent_rejects_unknown_key_in_a_dict_config():
    with pytest.raises(ConfigError, match="learning_rate"):
        A2C("CartPole-v1", {"learnig_rate": 1e-3}, logdir=None)


# -- '--set key=value' strings --------------------------------------------------------------
def test_set_strings_are_coerced_to_field_types():
    values = parse_set([
        "learning_rate=1e-3", "network.hidden_sizes=[64,64]", "normalize_obs=true",
        "normalize_reward=False", "n_steps=128", "total_steps=1e5", "target_kl = 0.02",
        "network.activation=relu", "clip_range_vf=0.5", "n_envs=4", "batch_size=128",
    ])
    cfg = update(PPOConfig(), values)
    assert cfg.learning_rate == 1e-3 and type(cfg.learning_rate) is float
    assert cfg.network.hidden_sizes == [64, 64]
    assert all(type(h) is int for h in cfg.network.hidden_sizes)
    assert cfg.normalize_obs is True and cfg.normalize_reward is False
    assert cfg.n_steps == 128 and type(cfg.n_steps) is int
    assert cfg.total_steps == 100_000 and type(cfg.total_steps) is int
    assert cfg.target_kl == 0.02 and cfg.clip_range_vf == 0.5
    assert cfg.network.activation == "relu"
    # Untouched fields keep their defaults; the input config is not modified.
    assert cfg.gamma == PPOConfig().gamma
    assert PPOConfig().learning_rate == 3e-4


@pytest.mark.parametrize("pair,key", [
    ("n_steps=abc", "n_steps"),
    ("n_steps=1.5", "n_steps"),
    ("learning_rate=fast", "learning_rate"),
    ("normalize_obs=maybe", "normalize_obs"),
    ("network.hidden_sizes=[64,abc]", "network.hidden_sizes"),
    ("network.hidden_sizes=64x64", "network.hidden_sizes"),
    ("n_epochs=true", "n_epochs"),
])
def test_bad_values_name_the_key(pair, key):
    with pytest.raises(ConfigError) as info:
        update(PPOConfig(), parse_set([pair]))
    assert str(info.value).startswith(f"{key}:"), str(info.value)


@pytest.mark.parametrize("pair", ["no_equals_sign", "=1"])
def test_parse_set_rejects_malformed_pairs(pair):
    with pytest.raises(ConfigError, match="key=value"):
        parse_set([pair])


def test_yaml_file_values_are_coerced(tmp_path):
    path = tmp_path / "cfg.yaml"
    # YAML 1.1 reads 1e-3 (no dot) as a string; coercion still gives a float.
    path.write_text("learning_rate: 1e-3\nnetwork:\n  hidden_sizes: [32]\nclip_range_vf: null\n")
    cfg = update(PPOConfig(), load_yaml(path))
    assert cfg.learning_rate == 1e-3 and cfg.network.hidden_sizes == [32]
    assert cfg.clip_range_vf is None
    with pytest.raises(ConfigError, match="not found"):
        load_yaml(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_yaml(tmp_path / "list.yaml")


# -- validation -------------------------------------------------------------------------------
@pytest.mark.parametrize("values,word", [
    ({"gamma": 2.0}, "gamma"),
    ({"gamma": 0.0}, "gamma"),
    ({"gae_lambda": 1.5}, "gae_lambda"),
    ({"n_steps": 10, "n_envs": 3, "batch_size": 7}, "batch_size"),
    ({"n_epochs": 0}, "n_epochs"),
    ({"clip_range": -0.1}, "clip_range"),
    ({"lr_schedule": "cosine"}, "lr_schedule"),
    ({"optimizer": "adagrad"}, "optimizer"),
    ({"network.encoder_grad_from": "encoder"}, "encoder_grad_from"),
    ({"network.activation": "sigmoid"}, "activation"),
    ({"network.hidden_sizes": [64, 0]}, "hidden_sizes"),
    ({"total_steps": 0}, "total_steps"),
])
def test_validation_errors(values, word):
    with pytest.raises(ConfigError, match=word):
        update(PPOConfig(), values)


def test_agent_validates_a_config_object_before_building_anything():
    with pytest.raises(ConfigError, match="gamma"):
        PPO("CartPole-v1", PPOConfig(gamma=2.0), logdir=None)
    bad = PPOConfig(n_steps=10, n_envs=3, batch_size=7)
    with pytest.raises(ConfigError, match=r"batch_size \(7\) must divide n_steps \* n_envs \(30\)"):
        bad.validate()


def test_valid_batch_size_divides_rollout():
    cfg = update(PPOConfig(), {"n_steps": 10, "n_envs": 3, "batch_size": 15})
    assert cfg.n_steps * cfg.n_envs % cfg.batch_size == 0


# -- docs, serialisation ------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [PPOConfig, A2CConfig, NetworkConfig])
def test_every_field_has_a_docstring(cls):
    docs = field_docs(cls)
    for f in dataclasses.fields(cls):
        assert docs.get(f.name, "").strip(), f"{cls.__name__}.{f.name} has no docstring"


def test_field_docs_follow_overrides():
    # A2C redeclares n_steps / optimizer with its own defaults and help.
    assert "one gradient step" in field_docs(A2CConfig)["n_steps"]
    assert "rmsprop" in field_docs(A2CConfig)["optimizer"]
    assert field_docs(PPOConfig)["n_steps"] != field_docs(A2CConfig)["n_steps"]


@pytest.mark.parametrize("cls", [PPOConfig, A2CConfig])
def test_to_dict_round_trips(cls):
    cfg = update(cls(), {"network.hidden_sizes": [8, 8], "seed": 3})
    assert update(cls(), to_dict(cfg)) == cfg
