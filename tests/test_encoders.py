"""The shared encoder for every algorithm: the CNN on image observations (PPO and A2C too), a
user's own Keras model (`encoder=`), freezing it, auditing it, checkpointing it."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from rl_sever.audit import audit_flow
from rl_sever.errors import ConfigError
from rl_sever.nn.encoders import Encoder, UserEncoder
from rl_sever.nn.layers import tf_variables
from tests.helpers import ALGOS, collect_or_sample, module_snapshot, tiny_agent


def small_encoder(name: str = "user_enc") -> keras.Model:
    return keras.Sequential([keras.layers.Dense(12, activation="tanh"), keras.layers.Dense(6)],
                            name=name)


@pytest.mark.parametrize("algo", ["ppo", "a2c"])
def test_onpolicy_image_observations_go_through_the_cnn(algo):
    agent = tiny_agent(algo, "Pixels/CartPole-v1")
    encoder = agent.model.encoder
    assert isinstance(encoder, Encoder) and encoder.kind == "cnn"  # not a flattening MLP
    assert any(isinstance(layer, keras.layers.Conv2D) for layer in encoder.net.layers)
    assert agent.obs_dtype == tf.uint8 and len(agent.obs_shape) == 3
    before = module_snapshot(agent, "encoder")
    agent.learn(32, progress=False)  # the default encoder_grad_from=both trains it
    assert any(not np.array_equal(a, b) for a, b in zip(before, module_snapshot(agent, "encoder")))
    agent.close()


@pytest.mark.parametrize("algo", ALGOS)
def test_user_encoder_is_the_shared_encoder_of_every_algorithm(algo):
    model = small_encoder()
    agent = tiny_agent(algo, encoder=model)
    enc_vars = {id(v) for v in model.trainable_variables}
    assert {id(v) for v in agent.flow_modules()["encoder"]} == enc_vars  # the same variables
    matrix = audit_flow(agent.flow_losses(collect_or_sample(agent)), agent.flow_modules())
    assert "encoder" in matrix.modules
    # Some loss trains it (actor+critic on-policy, the critic off-policy), and the contract holds.
    assert any(matrix.status(loss, "encoder") == "flow" for loss in matrix.losses)
    assert not agent.flow_contract().check(matrix)
    agent.close()


@pytest.mark.parametrize("algo", ["ppo", "sac"])
def test_frozen_user_encoder_stays_bit_identical_then_trains(algo):
    model = small_encoder()
    agent = tiny_agent(algo, encoder=model, fill=0, freeze={"encoder": {"until_step": 96}})
    before = [v.numpy().copy() for v in model.trainable_variables]
    agent.learn(96, progress=False)
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(before, model.trainable_variables))
    agent.learn(96, progress=False)  # unfrozen from step 96 on
    assert any(not np.array_equal(a, v.numpy()) for a, v in zip(before, model.trainable_variables))
    agent.close()


@pytest.mark.parametrize("algo", ["a2c", "td3"])
def test_user_encoder_checkpoint_round_trip_needs_the_architecture(algo, tmp_path):
    from agents import load

    agent = tiny_agent(algo, encoder=small_encoder(), logdir=tmp_path)
    agent.learn(64, progress=False)
    run_dir = agent.run_dir
    record = json.loads((run_dir / "config.json").read_text())
    assert "user_enc" in record["user_encoder"]
    obs = np.stack([agent.env.single_observation_space.sample() for _ in range(5)])
    expected = agent.predict(obs)
    agent.close()
    with pytest.raises(ConfigError, match="user-supplied encoder"):
        load(run_dir)
    fresh = small_encoder()  # same architecture, fresh weights: the checkpoint restores them
    loaded = load(run_dir, encoder=fresh)
    np.testing.assert_array_equal(loaded.predict(obs), expected)
    loaded.close()


def test_cli_eval_of_a_user_encoder_run_is_a_clear_error(tmp_path, capsys):
    from rl_sever import cli

    agent = tiny_agent("ppo", encoder=small_encoder(), logdir=tmp_path)
    agent.learn(32, progress=False)
    agent.close()
    assert cli.main(["eval", str(agent.run_dir), "--episodes", "1"]) == 2
    assert "user-supplied encoder" in capsys.readouterr().err


def test_user_encoder_errors_name_the_problem():
    with pytest.raises(ConfigError, match="keras.Model or keras.layers.Layer"):
        UserEncoder(lambda x: x, (4,))
    with pytest.raises(ConfigError, match=r"\(batch, features\)"):
        UserEncoder(keras.layers.Reshape((2, 2)), (4,))
    with pytest.raises(ConfigError, match="failed on observations"):
        UserEncoder(keras.layers.Conv2D(3, 3), (4,))
    with pytest.raises(ConfigError, match="user-supplied encoder cannot be mirrored"):
        tiny_agent("ppo", encoder=small_encoder(), distribute="mirrored")


def test_export_holds_the_user_encoder(tmp_path):
    from rl_sever.core.export import export_policy

    agent = tiny_agent("ppo", encoder=small_encoder(), logdir=None)
    agent.learn(32, progress=False)
    out = export_policy(agent, tmp_path / "policy")
    served = tf.saved_model.load(str(out))
    obs = np.stack([agent.env.single_observation_space.sample() for _ in range(4)])
    action = served.signatures["serving_default"](observation=tf.constant(obs))["action"].numpy()
    np.testing.assert_array_equal(action, agent.predict(obs))
    agent.close()


def test_pretrained_encoder_example_freezes_then_fine_tunes(tmp_path):
    from examples import pretrained_encoder

    snapshots = {}
    original = pretrained_encoder.PPO.learn

    def learn(self, *args, **kwargs):  # read the encoder at the unfreeze step and at the end
        model = self.user_encoder
        start = [v.numpy().copy() for v in model.trainable_variables]
        original(self, 256, progress=False)
        snapshots["at_unfreeze"] = [v.numpy().copy() for v in model.trainable_variables]
        original(self, 256, progress=False)
        snapshots["end"] = [v.numpy().copy() for v in model.trainable_variables]
        snapshots["start"] = start
        return self

    pretrained_encoder.PPO.learn = learn
    try:
        agent = pretrained_encoder.main(["--steps", "512", "--unfreeze-at", "256",
                                         "--logdir", "", "--pretrain-samples", "256"])
    finally:
        pretrained_encoder.PPO.learn = original
    assert all(np.array_equal(a, b) for a, b in zip(snapshots["start"], snapshots["at_unfreeze"]))
    assert any(not np.array_equal(a, b) for a, b in zip(snapshots["at_unfreeze"], snapshots["end"]))
    assert "encoder" in agent.flow_modules()
    agent.close()


@pytest.mark.parametrize("algo,blocked,trains", [("ppo", "policy", "value"),
                                                  ("sac", "actor", "critic")])
def test_user_encoder_gets_exactly_no_gradient_from_the_losses_that_may_not_train_it(
        algo, blocked, trains):
    """encoder_grad_from=critic: the actor-side loss gives None or an exact zero for every
    encoder variable, the critic-side loss a non-zero gradient."""
    model = small_encoder()
    agent = tiny_agent(algo, encoder=model, **{"network.encoder_grad_from": "critic"})
    losses = agent.flow_losses(collect_or_sample(agent))
    variables = tf_variables(model.trainable_variables)  # Keras 3 variables -> tf.Variables
    for name, must_flow in ((blocked, False), (trains, True)):
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(variables)
            value = losses[name]()
        grads = tape.gradient(value, variables)
        flows = any(g is not None and np.any(g.numpy()) for g in grads)
        assert flows == must_flow, (name, [None if g is None else float(tf.norm(g)) for g in grads])
    agent.close()
