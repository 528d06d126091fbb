"""Off-policy configs: documented keys, validation, presets, registry."""

from __future__ import annotations

import pytest

from rl_sever.config import presets
from rl_sever.config.fields import describe_config, to_dict, update
from rl_sever.config.run import parse_grad_from
from rl_sever.core.registry import get_agent_class
from rl_sever.errors import ConfigError

ALGOS = ["sac", "td3", "ddpg"]


@pytest.mark.parametrize("algo", ALGOS)
def test_every_key_has_a_docstring_and_round_trips(algo):
    cls = get_agent_class(algo).config_cls
    rows = describe_config(cls())
    assert rows and all(doc for _, _, doc in rows), [k for k, _, d in rows if not d]
    keys = {k for k, _, _ in rows}
    assert {"buffer_size", "network.encoder_grad_from", "auxiliary.beta", "save_replay"} <= keys
    assert update(cls(), to_dict(cls())) == cls()


@pytest.mark.parametrize(
    "text, expected",
    [
        ("critic", {"critic"}),
        ("critic+aux", {"critic", "aux"}),
        ("both", {"actor", "critic"}),
        ("none", set()),
        ("actor, aux", {"actor", "aux"}),
    ],
)
def test_encoder_grad_from_combinations(text, expected):
    assert parse_grad_from(text) == expected


@pytest.mark.parametrize(
    "values, word",
    [
        ({"normalize_obs": True}, "not supported by off-policy"),
        ({"tau": 0.0}, "tau"),
        ({"gradient_steps": 0}, "gradient_steps"),
        ({"n_step": 0}, "n_step"),
        ({"network.encoder_grad_from": "everything"}, "encoder_grad_from"),
    ],
)
def test_validation_errors(values, word):
    with pytest.raises(ConfigError, match=word):
        update(get_agent_class("sac").config_cls(), values)


def test_off_policy_presets_are_shipped():
    shipped = set(presets.available())
    for algo in ("sac", "td3"):
        for env_id in ("Pendulum-v1", "LunarLanderContinuous-v3", "HalfCheetah-v5", "Hopper-v5"):
            assert (algo, env_id) in shipped


def test_sac_pendulum_preset_is_the_zoo_configuration():
    cfg = presets.resolve(get_agent_class("sac").config_cls, [presets.find("sac", "Pendulum-v1")])
    assert (cfg.total_steps, cfg.learning_rate, cfg.batch_size, cfg.buffer_size) == (
        20_000,
        1e-3,
        256,
        1_000_000,
    )
    assert (cfg.learning_starts, cfg.tau, cfg.gamma, cfg.network.hidden_sizes) == (
        100,
        0.005,
        0.99,
        [256, 256],
    )


def test_defaults_match_the_papers_and_sb3():
    sac, td3 = get_agent_class("sac").config_cls(), get_agent_class("td3").config_cls()
    assert sac.n_envs == 1 and sac.learn_ent_coef and sac.target_entropy is None
    assert (td3.policy_delay, td3.target_policy_noise, td3.target_noise_clip) == (2, 0.2, 0.5)
    assert td3.network.hidden_sizes == [400, 300] and td3.learning_rate == 1e-3
