"""Freeze schedules in the trainer config: the encoder is bit-identical until step N, then moves."""

import numpy as np
import pytest

from agents import PPO, PPOConfig
from rl_sever.errors import ConfigError


def _config(**kw):
    base = dict(n_envs=2, n_steps=16, batch_size=32, n_epochs=2, eval_episodes=0,
                network={"shared_encoder": True, "encoder_grad_from": "both"})
    base.update(kw)
    return PPOConfig(**{k: v for k, v in base.items() if k != "network"},
                     network=PPOConfig().network.__class__(**base["network"]))


def _encoder(agent):
    out = [v.numpy().copy() for v in agent.model.encoder.trainable_variables]
    assert out  # an empty snapshot would make every comparison below vacuous
    return out


def test_encoder_frozen_until_step_then_trains(tmp_path):
    agent = PPO("CartPole-v1", _config(freeze={"encoder": {"until_step": 96}}), logdir=tmp_path)
    before = _encoder(agent)
    heads = [v.numpy().copy() for v in agent.model.pi.trainable_variables]
    agent.learn(96, progress=False)  # 3 iterations of 32 steps, all before step 96
    assert all(np.array_equal(a, b) for a, b in zip(before, _encoder(agent)))
    assert not all(np.array_equal(a, v.numpy()) for a, v in zip(heads, agent.model.pi.trainable_variables))
    enc_opt = agent.optimizer.optimizers["encoder"]
    assert int(enc_opt.iterations.numpy()) == 0  # the optimizer never stepped the frozen module
    agent.learn(64, progress=False)
    assert not all(np.array_equal(a, b) for a, b in zip(before, _encoder(agent)))
    assert agent.train_fn.experimental_get_tracing_count() == 1  # flipping the flag did not retrace


def test_freeze_whole_run_and_unknown_module(tmp_path):
    agent = PPO("CartPole-v1", _config(freeze={"encoder": {}}), logdir=None)
    before = _encoder(agent)
    agent.learn(64, progress=False)
    assert all(np.array_equal(a, b) for a, b in zip(before, _encoder(agent)))
    with pytest.raises(ConfigError, match="unknown module 'encodr'.*encoder"):
        PPO("CartPole-v1", _config(freeze={"encodr": {}}), logdir=None)


def test_freeze_from_set_string():
    from rl_sever.config.fields import update

    cfg = update(PPOConfig(), {"freeze": "{critic: {from_step: 1000}}"})
    assert cfg.freeze == {"critic": {"from_step": 1000}}
