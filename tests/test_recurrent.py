"""Recurrent policies (network.recurrent; rl_sever.nn.recurrent, rl_sever.onpolicy.sequences):
the batched sequence forward is the step-by-step one, states reset exactly at episode starts,
the update replays the behaviour policy exactly, gradient flows through time but not across an
episode start, and predict/evaluate/save/load/export carry the state."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from rl_sever import cli
from rl_sever.errors import ConfigError
from rl_sever.nn.recurrent import UNROLL_MAX, RecurrentCore
from tests.helpers import ONPOLICY, flows, none_or_zero, snapshot, term_gradients, tiny_agent

RNN = {"network.recurrent": "lstm", "network.recurrent_size": 8}


def recurrent_agent(algo="ppo", env="CartPoleNoVel-v1", kind="lstm", **overrides):
    return tiny_agent(algo, env, **{**RNN, "network.recurrent": kind, **overrides})


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("length", [5, UNROLL_MAX + 3])  # unrolled, and the tf.scan loop
def test_sequence_forward_equals_step_by_step(kind, length):
    tf.keras.utils.set_random_seed(0)
    core = RecurrentCore(3, 6, kind)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, length, 3)).astype(np.float32)
    state0 = rng.standard_normal((4, core.state_dim)).astype(np.float32)
    starts = rng.random((4, length)) < 0.2
    outs, states = core.sequence(tf.constant(x), tf.constant(state0), tf.constant(starts),
                                 return_states=True)
    state = state0
    for t in range(length):
        state = np.where(starts[:, t, None], 0.0, state).astype(np.float32)
        h, state = core.step(tf.constant(x[:, t]), tf.constant(state))
        np.testing.assert_allclose(outs[:, t], h, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(states[:, t], state, rtol=1e-5, atol=1e-6)
        # The NumPy twin (host acting) computes the same step.
        weights = [v.numpy() for v in (core.kernel, core.recurrent_kernel, core.bias)]
        h_np, _ = core.numpy_step(x[:, t], np.asarray(states[:, t - 1]) if t else state0, weights)
        if not starts[:, t].any():
            np.testing.assert_allclose(h_np, h, rtol=1e-5, atol=1e-5)
        state = state.numpy()


@pytest.mark.parametrize("host_act", ["on", "off"])
def test_states_reset_exactly_at_episode_starts(host_act):
    agent = recurrent_agent(n_steps=32, host_act=host_act)
    batch = agent.collector.collect().batch
    state, dones = batch.state, batch.dones
    assert dones.any()
    starts = np.concatenate([np.ones((1, dones.shape[1]), bool), dones[:-1]])  # reset first
    zero = ~np.abs(state).any(axis=-1)
    np.testing.assert_array_equal(zero, starts)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("host_act", ["on", "off"])
def test_update_replays_the_behaviour_policy(kind, host_act):
    agent = recurrent_agent(kind=kind, n_steps=32, bptt_length=8, batch_size=16, host_act=host_act)
    batch = agent.collector.collect().batch
    assert batch.dones.any()
    mb = agent._minibatch(agent.prepare_fn(*batch), None)
    out = agent.forward(mb)
    np.testing.assert_allclose(out["logp"], mb["logp_old"], atol=2e-5)
    np.testing.assert_allclose(out["values"], mb["old_values"], atol=2e-5)


def test_next_values_continue_the_episode_memory():
    agent = recurrent_agent(n_steps=32)
    b = agent.collector.collect().batch
    env_major = lambda x: tf.transpose(tf.constant(x), [1, 0, *range(2, np.ndim(x))])  # noqa: E731
    from rl_sever.onpolicy.sequences import episode_starts

    starts = episode_starts(env_major(b.dones))
    nv = tf.transpose(agent.model.next_values(env_major(b.obs), env_major(b.next_obs),
                                              tf.constant(b.state[0]), starts)).numpy()
    inside = ~b.dones[:-1]  # V(next obs) is the next step's V where the episode went on
    np.testing.assert_allclose(nv[:-1][inside], b.value[1:][inside], atol=2e-5)


def test_gradient_flows_through_time_but_not_across_an_episode_start():
    tf.keras.utils.set_random_seed(0)
    core = RecurrentCore(2, 4, "lstm")
    x = tf.Variable(tf.random.normal([1, 6, 2]))
    for start, reaches in ((np.zeros((1, 6), bool), True), (np.eye(6, dtype=bool)[3:4], False)):
        with tf.GradientTape() as tape:
            out = core.sequence(x, tf.zeros([1, core.state_dim]), tf.constant(start))
            loss = tf.reduce_sum(out[:, -1])
        grad = tape.gradient(loss, x).numpy()[0]
        assert np.any(grad[:3]) == reaches  # the first steps, before a reset at step 3
        assert np.any(grad[3:])


def test_the_audit_sees_the_recurrent_core():
    agent = recurrent_agent(n_steps=16)
    batch = agent.collector.collect().batch
    for term in ("policy", "value", "entropy"):
        assert flows(term_gradients(agent, batch, term)["recurrent"])
    critic_only = recurrent_agent(n_steps=16, **{"network.encoder_grad_from": "critic"})
    batch = critic_only.collector.collect().batch
    grads = term_gradients(critic_only, batch, "policy")
    assert none_or_zero(grads["recurrent"]) and flows(grads["actor"])
    assert flows(term_gradients(critic_only, batch, "value")["recurrent"])
    # The agent's own audit holds the same on a real first update.
    critic_only.learn(32, progress=False)


def test_a_frozen_encoder_stays_frozen_under_recurrence():
    agent = recurrent_agent(n_steps=16, **{"network.shared_encoder": True,
                                           "freeze": {"encoder": {}}})
    enc, core = agent.model.modules()["encoder"], agent.model.modules()["recurrent"]
    enc0, core0 = snapshot(enc), snapshot(core)
    agent.learn(64, progress=False)
    assert all(np.array_equal(a, b.numpy()) for a, b in zip(enc0, enc))
    assert any(not np.array_equal(a, b.numpy()) for a, b in zip(core0, core))


def test_predict_carries_the_state():
    agent = recurrent_agent()
    obs = np.random.default_rng(0).standard_normal((3, 2)).astype(np.float32)
    a1, s1 = agent.predict(obs)
    assert s1.shape == (3, agent.layout.state_dim) and np.abs(s1).any()
    a2, s2 = agent.predict(obs, s1)
    assert not np.allclose(s1, s2)
    # episode_start zeroes the state of those observations: as if state were None there.
    _, s3 = agent.predict(obs, s1, np.array([True, False, True]))
    np.testing.assert_allclose(s3[[0, 2]], s1[[0, 2]], atol=1e-6)
    np.testing.assert_allclose(s3[1], s2[1], atol=1e-6)
    one, state = agent.predict(obs[0])
    assert np.shape(one) == () and state.shape == (agent.layout.state_dim,)
    assert agent.predict(obs, False)[1].shape == s1.shape  # predict(obs, deterministic) still works
    with pytest.raises(ConfigError, match="recurrent state"):
        agent.predict(obs, np.zeros((3, 5)))


def test_save_load_resume_keep_the_policy(tmp_path):
    agent = recurrent_agent(logdir=tmp_path, n_steps=16)
    agent.learn(64, progress=False)
    agent.save()
    obs = np.random.default_rng(1).standard_normal((4, 2)).astype(np.float32)
    a1, s1 = agent.predict(obs)
    loaded = type(agent).load(agent.run_dir)
    a2, s2 = loaded.predict(obs)
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_array_equal(s1, s2)
    loaded.learn(32, progress=False)  # resumes training
    assert int(loaded.global_step.numpy()) == 96


@pytest.mark.parametrize("algo", ONPOLICY)  # every on-policy page of the registry
def test_learns_and_evaluates_with_memory(algo):
    from rl_sever.core.evaluation import evaluate

    agent = recurrent_agent(algo, kind="gru")
    agent.learn(64, progress=False)
    out = evaluate(agent, 2)
    assert out["episodes"] == 2 and out["mean_reward"] > 0


def test_bad_combinations_are_one_line_errors(tmp_path, capsys):
    with pytest.raises(ConfigError, match="bptt_length"):
        recurrent_agent(n_steps=16, bptt_length=5)
    with pytest.raises(ConfigError, match="network.recurrent"):
        recurrent_agent(**{"network.recurrent": "transformer"})
    model = recurrent_agent().model  # its feed-forward calls would skip the memory
    for call in (model.value, model.distribution, model):
        with pytest.raises(ValueError, match="depends on its state"):
            call(tf.zeros([1, 2]))
    code = cli.main(["train", "sac", "Pendulum-v1", "--steps", "10", "--logdir", str(tmp_path),
                     "--set", "network.recurrent=lstm"])
    err = capsys.readouterr().err
    assert code == 2 and "network.recurrent" in err and "on-policy agents" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_export_takes_and_returns_the_state(tmp_path):
    from rl_sever.core.export import export_policy

    agent = recurrent_agent()
    path = export_policy(agent, tmp_path / "policy")
    serve = tf.saved_model.load(str(path)).signatures["serving_default"]
    obs = np.random.default_rng(2).standard_normal((3, 2)).astype(np.float32)
    state = np.zeros((3, agent.layout.state_dim), np.float32)
    for start in (np.ones(3, bool), np.zeros(3, bool)):
        out = serve(observation=tf.constant(obs), state=tf.constant(state),
                    episode_start=tf.constant(start))
        actions, expected = agent.predict(obs, state, start)
        np.testing.assert_array_equal(out["action"].numpy(), actions)
        np.testing.assert_allclose(out["next_state"].numpy(), expected, atol=1e-6)
        state = expected


def test_in_graph_training_carries_and_checkpoints_the_state(tmp_path):
    agent = recurrent_agent(env="tf:CartPole-v1", logdir=tmp_path, n_steps=8, batch_size=8,
                            audit=False)  # the audited first update: test_the_audit_sees_...
    agent.learn(32, progress=False)
    memory = agent.ingraph.memory.numpy()
    assert np.abs(memory).any()
    agent.save()
    loaded = type(agent).load(agent.run_dir)
    np.testing.assert_array_equal(loaded.ingraph.memory.numpy(), memory)


def test_eval_video_replays_the_recurrent_policys_episodes(tmp_path):
    from pathlib import Path

    from rl_sever.core.evaluation import evaluate

    agent = recurrent_agent()
    result = evaluate(agent, 2, seed=5, video_dir=tmp_path / "v")
    assert len(result["videos"]) == 2 and result["replay_matches"]
    assert all(Path(v).stat().st_size > 1000 for v in result["videos"])


def test_next_values_of_truncated_episodes_use_the_episode_memory():
    """A truncated episode bootstraps from V(true final obs) given the state after its last
    step: replayed step by step here, against the batched pass of the update."""
    from tests.helpers import COUNTDOWN_ID

    agent = recurrent_agent(env=COUNTDOWN_ID, n_steps=24)
    b = agent.collector.collect().batch
    assert (b.dones & ~b.terminated).any()  # truncations happened
    env_major = lambda x: tf.transpose(tf.constant(x), [1, 0, *range(2, np.ndim(x))])  # noqa: E731
    from rl_sever.onpolicy.sequences import episode_starts

    nv = tf.transpose(agent.model.next_values(
        env_major(b.obs), env_major(b.next_obs), tf.constant(b.state[0]),
        episode_starts(env_major(b.dones)))).numpy()
    for e in range(b.obs.shape[1]):
        state = b.state[0, e:e + 1]
        for t in range(b.obs.shape[0]):
            _, _, after = agent.model.step(tf.constant(b.obs[t, e:e + 1]), tf.constant(state))
            _, v, _ = agent.model.step(tf.constant(b.next_obs[t, e:e + 1]), after)
            np.testing.assert_allclose(nv[t, e], v.numpy()[0], atol=2e-5)
            state = np.zeros_like(state) if b.dones[t, e] else after.numpy()
