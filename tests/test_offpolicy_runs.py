"""SAC / TD3 through the shared training loop: smoke runs (XLA, the VAE, image observations),
episode ends in the replay buffer, logging, resume with the buffer. What every algorithm shares
(smoke, save/load, no retrace, contracts) is in tests/test_every_algorithm.py."""

from __future__ import annotations

import numpy as np
import pytest

from envs import make_vec_env
from rl_sever.core.agent import Agent
from rl_sever.core.registry import get_agent_class
from tests.helpers import COUNTDOWN_ID, read_event_tensors, tiny_agent, tiny_config


@pytest.mark.parametrize(
    "algo, extra",
    [
        ("sac", {"jit_compile": True}),  # plain TD3 / SAC / DDPG: tests/test_every_algorithm.py
        (
            "sac",
            {
                "network.shared_encoder": True,
                "aux": ["vae"],
                "network.encoder_grad_from": "critic+aux",
                "n_envs": 2,
            },
        ),
    ],
)
def test_vector_observation_smoke(algo, extra):
    agent = tiny_agent(algo, fill=0, learning_starts=32, **extra)
    agent.learn(160, progress=False)
    assert int(agent.global_step.numpy()) == 160
    assert len(agent.replay) == 160
    assert agent.n_updates.numpy() > 0
    assert agent.predict(np.zeros(3, np.float32)).shape == (1,)


@pytest.mark.parametrize("algo, aux", [("sac", ["vae"]), ("td3", [])])
def test_image_observation_smoke(algo, aux):
    env = make_vec_env("Pixels/Pendulum-v1", 1, seed=0, env_kwargs={"size": 16, "frame_stack": 2})
    cfg = tiny_config(
        algo,
        learning_starts=24,
        batch_size=8,
        aux=aux,
        **{
            "network.cnn_channels": [8, 8],
            "network.feature_dim": 8,
            "network.encoder_grad_from": "critic+aux" if aux else "critic",
        },
    )
    agent = get_agent_class(algo)(env, cfg, logdir=None)
    assert agent.encoder.kind == "cnn" and agent.replay.obs.dtype == np.uint8
    agent.learn(40, progress=False)
    assert agent.n_updates.numpy() > 0
    assert set(agent.flow_modules()) >= {"encoder", "targets"} | ({"decoder"} if aux else set())
    assert agent.predict(agent.collector.obs).shape == (1, 1)


def test_episode_ends_store_the_true_final_observation():
    agent = tiny_agent("sac", env=COUNTDOWN_ID, fill=0, learning_starts=1000)
    agent.learn(60, progress=False)
    buf, n = agent.replay, len(agent.replay)
    obs, nxt = buf.obs[:n, 0], buf.next_obs[:n, 0]
    term, dones = buf.terminated[:n, 0], buf.dones[:n, 0]
    assert term.any() and (dones & ~term).any()  # both kinds of episode end happened
    # Terminated at t == 4, truncated at t == 6 (TimeLimit): next_obs is the final state,
    # never the reset observation (t == 0) of the next episode, which starts the next row.
    np.testing.assert_allclose(nxt[term, 0], 0.4)
    np.testing.assert_allclose(nxt[dones & ~term, 0], 0.6)
    np.testing.assert_allclose(obs[1:][dones[:-1], 0], 0.0)
    inside = ~dones[:-1]
    np.testing.assert_array_equal(nxt[:-1][inside], obs[1:][inside])
    # Stored actions are in [-1, 1] (the env saw them scaled to [-2, 2]).
    assert np.all(np.abs(buf.actions[:n]) <= 1.0)


def test_logging_uses_sb3_names_and_aux_losses(tmp_path):
    agent = tiny_agent(
        "sac",
        fill=0,
        logdir=tmp_path,
        learning_starts=32,
        log_every_steps=0,
        **{
            "network.shared_encoder": True,
            "aux": ["vae", "reward"],
            "network.encoder_grad_from": "critic+aux",
        },
    )
    agent.learn(128, progress=False)
    tags = read_event_tensors(agent.run_dir)
    for key in (
        "train/actor_loss",
        "train/critic_loss",
        "train/ent_coef",
        "train/ent_coef_loss",
        "train/learning_rate",
        "train/n_updates",
        "loss/vae",
        "loss/vae_recon",
        "loss/vae_kl",
        "loss/reward",
        "time/fps",
    ):
        assert key in tags, key
    assert "audit/gradient_flow" in tags
    steps = [s for s, _ in tags["train/critic_loss"]]
    assert steps == sorted(steps) and steps[-1] == 128


def test_resume_continues_with_the_same_buffer_and_step_counter(tmp_path):
    agent = tiny_agent("sac", fill=0, logdir=tmp_path, learning_starts=32, keep_checkpoints=2,
                       checkpoint_every=0)  # checkpoints at the end of each learn() only
    agent.learn(96, progress=False)
    run_dir = agent.run_dir
    ckpt = run_dir / "checkpoints"
    assert (ckpt / "replay-96" / "meta.json").is_file()
    rows, updates = agent.replay.filled_rows, int(agent.n_updates.numpy())
    obs = np.array(agent.replay.obs[:rows])
    state = agent.replay.rng.bit_generator.state
    agent.close()

    resumed = Agent.load(run_dir)
    assert int(resumed.global_step.numpy()) == 96 and int(resumed.n_updates.numpy()) == updates
    np.testing.assert_array_equal(resumed.replay.obs[:rows], obs)
    assert resumed.replay.filled_rows == rows and resumed.replay.rng.bit_generator.state == state
    probe = np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(resumed.predict(probe), agent.predict(probe))
    resumed.learn(64, progress=False)
    assert int(resumed.global_step.numpy()) == 160
    assert int(resumed.n_updates.numpy()) > updates
    assert sorted(p.name for p in ckpt.glob("replay-*")) == ["replay-160", "replay-96"]
    resumed.learn(32, progress=False)  # keep_checkpoints=2 prunes the oldest buffer too
    assert sorted(p.name for p in ckpt.glob("replay-*")) == ["replay-160", "replay-192"]


def test_save_replay_false_writes_no_buffer(tmp_path):
    agent = tiny_agent("td3", fill=0, logdir=tmp_path, learning_starts=16, save_replay=False)
    agent.learn(48, progress=False)
    assert not list((agent.run_dir / "checkpoints").glob("replay-*"))
    resumed = Agent.load(agent.run_dir)
    assert len(resumed.replay) == 0 and int(resumed.global_step.numpy()) == 48
    resumed.learn(32, progress=False)  # refills learning_starts transitions, then updates
    assert int(resumed.n_updates.numpy()) > int(agent.n_updates.numpy())


def test_exported_policy_matches_predict(tmp_path):
    import tensorflow as tf

    from rl_sever.core.export import export_policy

    agent = tiny_agent("sac", fill=0, learning_starts=16)
    agent.learn(32, progress=False)
    export_policy(agent, tmp_path / "policy")
    policy = tf.saved_model.load(str(tmp_path / "policy"))
    obs = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    out = policy.signatures["serving_default"](observation=obs)["action"].numpy()
    np.testing.assert_allclose(out, agent.predict(obs), rtol=1e-6, atol=1e-6)
    assert np.all(np.abs(out) <= 2.0)


def test_audit_runs_at_the_first_update_even_when_learn_is_split_before_it(monkeypatch):
    import rl_sever.core.loop as loop

    audited = []
    real = loop.run_audit
    monkeypatch.setattr(loop, "run_audit", lambda agent, batch, **kw: audited.append(
        int(agent.global_step.numpy())) or real(agent, batch, **kw))
    agent = tiny_agent("sac", fill=0, learning_starts=32)
    agent.learn(16, progress=False)  # all before learning_starts: nothing to audit yet
    assert audited == [] and int(agent.n_updates.numpy()) == 0
    agent.learn(32, progress=False)
    agent.learn(16, progress=False)
    assert audited == [32], audited  # once, at the first update, in the second learn() call
    agent.close()


@pytest.mark.parametrize("algo", ["sac", "td3"])
def test_the_audited_first_update_is_the_update_and_act_call(algo, monkeypatch):
    """The loop's first update (after the audit) runs the call every later update runs, which
    also gives the next actions: the separate update step is never traced, and the run is
    bit-identical to one that updates, then acts."""
    from rl_sever.offpolicy.collector import OffPolicyCollector

    def run():
        agent = tiny_agent(algo, fill=0, train_freq=1, gradient_steps=1)
        try:
            agent.learn(160, progress=False)
            return agent._concrete.keys(), [v.numpy() for v in agent.actor.weights]
        finally:
            agent.close()

    traced, weights = run()
    assert "update" not in traced and "update_act" in traced
    monkeypatch.setattr(OffPolicyCollector, "first_update_obs", lambda self, batch: None)
    traced_apart, weights_apart = run()
    assert "update" in traced_apart and "act" in traced_apart
    for a, b in zip(weights, weights_apart):
        np.testing.assert_array_equal(a, b)


def test_a_first_update_during_the_warm_up_does_not_act():
    """A buffer smaller than learning_starts fills (and updates begin) while actions are still
    uniform: that first update must not draw an act seed whose actions would be dropped."""
    agent = tiny_agent("sac", fill=0, buffer_size=32, learning_starts=64, train_freq=1)
    try:
        agent.learn(48, progress=False)  # ready at 32 env steps, still warming up until 64
        assert "update" in agent._concrete and "update_act" in agent._concrete
        assert agent.collector._handed is None
    finally:
        agent.close()
