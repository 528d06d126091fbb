"""Env runners on Ray (rl_sever.runners): seeds per runner, trajectories bit-identical to local
collection through the object store, the off-policy update ratio, normalisation across
runners, a runner killed mid-run, resume, and one-line errors for a cluster that is not there."""

from __future__ import annotations

import functools
import os
import signal
from pathlib import Path

import numpy as np
import pytest

from rl_sever import cli
from rl_sever.errors import ConfigError
from rl_sever.runners.cluster import connect
from rl_sever.runners.normalizer import merge_moments, moments_since, set_stats, stats_of
from rl_sever.runners.runner import EnvRunner, runner_config
from tests.helpers import make_agent, tiny_agent, tiny_config

ray = pytest.importorskip("ray")



# -- before Ray runs in this process: the addresses ------------------------------------------
@pytest.mark.parametrize("address, message", [
    ("127.0.0.1:1", "cannot reach the Ray head at 127.0.0.1:1"),
    ("auto", "ray_address=auto: no running Ray cluster was found"),
])
def test_an_unreachable_cluster_is_a_config_error(address, message, monkeypatch, tmp_path):
    assert not ray.is_initialized()
    # `auto` finds any Ray on the machine (the other test process's): this one sees none.
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    monkeypatch.setattr(ray._private.services, "find_gcs_addresses", functools.cache(list))
    with pytest.raises(ConfigError, match=message):
        connect(address, 2, 1.0)


def test_cli_unreachable_head_exits_2_and_keeps_the_run_folder(tmp_path, capsys):
    code = cli.main(["train", "ppo", "CartPole-v1", "--set", "runners=2",
                     "--set", "ray_address=127.0.0.1:1", "--steps", "64",
                     "--logdir", str(tmp_path), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().splitlines()[-1].startswith("error: cannot reach the Ray head"), err
    assert "Traceback" not in err
    (run_dir,) = tmp_path.iterdir()
    assert (run_dir / "config.json").exists()


@pytest.mark.parametrize("values, message", [
    ({"runners": 3, "n_envs": 4}, "must be a multiple of runners"),
    ({"runners": -1}, "runners must be >= 0"),
    ({"runners": 2, "ray_address": "head"}, "ray_address must be local, auto or host:port"),
    ({"runners": 2, "runner_cpus": 0}, "runner_cpus must be positive"),
    ({"runners": 2, "distribute": "mirrored"}, "not supported yet"),
])
def test_bad_runner_settings(values, message):
    with pytest.raises(ConfigError, match=message):
        tiny_config("ppo", **values).validate()


def test_runner_configs_split_the_envs_and_seed_them_as_a_local_run():
    cfg = tiny_config("ppo", n_envs=6, seed=10, runners=3, vectorization="async")
    parts = [runner_config(cfg, i, 3) for i in range(3)]
    assert [(p.n_envs, p.seed, p.runners, p.vectorization) for p in parts] == [
        (2, 10, 0, "sync"), (2, 12, 0, "sync"), (2, 14, 0, "sync")]
    assert cfg.runners == 3  # the learner's own config is untouched


# -- no Ray: the runner in this process ------------------------------------------------------
def _batch(agent):
    return agent.collector.collect().batch


@pytest.mark.parametrize("overrides", [
    {},
    {"network.recurrent": "gru", "network.recurrent_size": 8},
    {"host_act": "off", "normalize_obs": True},
], ids=["mlp", "recurrent", "compiled_act_normalized"])
def test_a_runner_collects_what_a_local_run_collects(overrides):
    local = make_agent("ppo", "CartPole-v1", overrides, n_envs=4, seed=3)
    expected = [np.array(x) for x in _batch(local) if not isinstance(x, tuple)]
    weights = [v.numpy() for v in local.acting_variables()]
    runner = EnvRunner(type(local), "CartPole-v1", tiny_config("ppo", overrides, n_envs=4, seed=3,
                                                               runners=1), 0, 1)
    stats = None if local.normalizer is None else stats_of(make_agent(
        "ppo", "CartPole-v1", overrides, n_envs=4, seed=3).normalizer)  # fresh statistics
    got = runner.rollout(weights, 0, stats)
    fields = [np.asarray(x) for x in got["batch"] if not isinstance(x, tuple)]
    assert len(fields) == len(expected)
    for a, b in zip(fields, expected):
        np.testing.assert_array_equal(a, b)
    if local.normalizer is not None:  # the moments it saw rebuild the local statistics
        base = make_agent("ppo", "CartPole-v1", overrides, n_envs=4, seed=3).normalizer
        merge_moments(base, got["moments"])
        for (m, v, n), (m2, v2, n2) in zip(stats_of(base), stats_of(local.normalizer)):
            np.testing.assert_allclose(m, m2, rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(v, v2, rtol=1e-9, atol=1e-12)
            assert n == pytest.approx(n2)
    local.close()


def test_moments_since_inverts_the_running_merge():
    agent = make_agent("ppo", "CartPole-v1", n_envs=2, normalize_obs=True, normalize_reward=True)
    norm = agent.normalizer
    rng = np.random.default_rng(0)
    for rms in norm._all_stats():
        rms.update(rng.normal(2.0, 3.0, (50, *rms.shape)))
    base = stats_of(norm)
    batches = [rng.normal(-1.0, 0.5, (30, *rms.shape)) for rms in norm._all_stats()]
    for rms, batch in zip(norm._all_stats(), batches):
        rms.update(batch)
    moments = moments_since(base, stats_of(norm))
    for (mean, var, n), batch in zip(moments, batches):
        assert n == pytest.approx(30)
        np.testing.assert_allclose(mean, batch.mean(0), rtol=1e-9)
        np.testing.assert_allclose(var, batch.var(0), rtol=1e-8)
    after = stats_of(norm)
    set_stats(norm, base)
    merge_moments(norm, moments)
    for (m, v, c), (m2, v2, c2) in zip(stats_of(norm), after):
        np.testing.assert_allclose(m, m2, rtol=1e-12)
        np.testing.assert_allclose(v, v2, rtol=1e-9)
        assert c == pytest.approx(c2)
    agent.close()


# -- with a local Ray ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.mark.parametrize("overrides, without_tensorflow", [
    ({"normalize_obs": True}, True), ({"host_act": "off"}, False)],
    ids=["numpy_runner_normalised", "agent_copy_runner"])
def test_one_runner_through_ray_is_bit_identical_to_local_collection(local_ray, overrides,
                                                                      without_tensorflow):
    local = make_agent("ppo", "CartPole-v1", overrides, n_envs=4, seed=5)
    remote = make_agent("ppo", "CartPole-v1", overrides, n_envs=4, seed=5, runners=1)
    expected, got = _batch(local), _batch(remote)
    assert remote.collector.group.without_tensorflow == without_tensorflow
    for a, b in zip(got, expected):
        if not isinstance(b, tuple):
            np.testing.assert_array_equal(a, b)
    if local.normalizer is not None:  # the learner merged what the runner's statistics saw
        for (m, v, n), (m2, v2, n2) in zip(stats_of(remote.normalizer), stats_of(local.normalizer)):
            np.testing.assert_allclose(m, m2, rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(v, v2, rtol=1e-9, atol=1e-12)
            assert n == pytest.approx(n2)
    remote.close()
    local.close()


def test_two_runners_step_the_local_envs_with_their_own_samplers(local_ray):
    local = make_agent("ppo", "CartPole-v1", n_envs=4, seed=5)
    remote = make_agent("ppo", "CartPole-v1", n_envs=4, seed=5, runners=2)
    expected, got = _batch(local), _batch(remote)
    assert got.obs.shape == expected.obs.shape == (16, 4, 4)
    # The same four sub-envs (seeded seed + j): the same first observations, column by column.
    np.testing.assert_array_equal(got.obs[0], expected.obs[0])
    # Runner 1's sampler is not runner 0's: its actions differ from runner 0's stream.
    assert not np.array_equal(got.actions[:, 2:], got.actions[:, :2])
    group = remote.collector.group
    assert group.without_tensorflow and len(set(group.pids())) == 2
    for pid in group.pids():  # the runner processes never loaded TensorFlow's library
        maps = Path(f"/proc/{pid}/maps")
        if maps.exists():
            assert "tensorflow" not in maps.read_text()
    remote.close()
    local.close()


@pytest.mark.parametrize("algo, learning_starts", [
    ("td3", 64),  # DDPG is TD3's page, TQC and CrossQ SAC's (their host actors:
    # test_the_host_actor_of_runners_is_the_compiled_actor)
    ("sac", 390),  # SAC, whose first update falls in the last chunk: the ones after it run
])
def test_offpolicy_runners_keep_the_update_ratio(local_ray, algo, learning_starts):
    settings = {"n_envs": 2, "train_freq": 2, "gradient_steps": 3, "steps_per_iteration": 10,
                "learning_starts": learning_starts}
    local = tiny_agent(algo, fill=0, **settings)
    local.learn(400, progress=False)
    remote = tiny_agent(algo, fill=0, runners=2, **settings)
    remote.learn(400, progress=False)
    assert remote.collector.group.without_tensorflow  # the page's NumPy actor and exploration
    assert int(remote.global_step.numpy()) == 400
    assert len(remote.replay) == len(local.replay) == 400
    # Updates every train_freq vector steps once the replay holds learning_starts transitions.
    assert int(remote.n_updates.numpy()) == int(local.n_updates.numpy()) > 0
    remote.close()
    local.close()


def test_her_on_runners(local_ray):
    import envs.bit_flipping  # noqa: F401

    agent = tiny_agent("sac", "BitFlippingContinuous-v0", fill=0, n_envs=2, runners=2,
                       learning_starts=64, steps_per_iteration=20,
                       her={"strategy": "future", "n_sampled_goal": 2})
    agent.learn(200, progress=False)
    assert int(agent.n_updates.numpy()) > 0
    assert agent.collector.group.without_tensorflow  # goal observations flattened: an MLP actor
    agent.replay.cut_episodes([0])  # what a restarted runner's columns get
    assert agent.replay.cur_len[0] == 0
    agent.close()


def test_a_killed_runner_is_restarted_and_the_run_completes_then_resumes(local_ray, tmp_path):
    from rl_sever.core.registry import get_agent_class

    agent = make_agent("ppo", "CartPole-v1", n_envs=4, runners=2, logdir=tmp_path,
                       total_steps=256, checkpoint_every=128)
    killed = []

    def kill_runner_once(agent, metrics):
        if not killed:
            pid = agent.collector.group.pids()[1]
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    agent.learn(256, progress=False, callback=kill_runner_once)
    assert int(agent.global_step.numpy()) == 256
    group = agent.collector.group
    assert group.restarts == 1 and group.dropped_episodes == 2
    assert killed[0] not in group.pids()  # runner 1 is a new process
    run_dir = agent.run_dir
    agent.close()
    resumed = get_agent_class("ppo").load(run_dir)
    resumed.learn(128, progress=False)  # new runners, the envs restarted as on one machine
    assert int(resumed.global_step.numpy()) == 384
    resumed.close()


class _NoNoise:
    def standard_normal(self, shape):
        return np.zeros(shape)


@pytest.mark.parametrize("algo", ["sac", "td3", "ddpg", "tqc", "crossq"])
def test_the_host_actor_of_runners_is_the_compiled_actor(algo):
    agent = tiny_agent(algo, fill=0, **{"network.matmul_precision": "float32"})
    host = agent.host_actor()
    assert host is not None
    obs = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)  # Pendulum
    weights = [v.numpy() for v in agent.acting_variables()]
    # Without noise, exploration is the greedy action of the compiled actor.
    np.testing.assert_allclose(host(obs, weights, _NoNoise()), agent._greedy_unit(obs).numpy(),
                               atol=1e-5)
    noisy = host(obs, weights, np.random.default_rng(1))
    assert noisy.shape == (5, 1) and np.all(np.abs(noisy) <= 1.0)
    assert not np.allclose(noisy, agent._greedy_unit(obs).numpy())
    agent.close()


def test_runner_configs_validate_with_their_share_of_the_envs():
    cfg = tiny_config("ppo", n_envs=8, n_steps=16, batch_size=128, runners=2)
    runner_config(cfg, 1, 2).validate()  # a minibatch of the whole rollout: 64 rows here


def test_an_env_only_the_learner_knows_is_one_line(local_ray):
    import gymnasium as gym

    from tests.helpers import TinyMultiDiscreteEnv

    if "RlSeverOnlyHere-v0" not in gym.registry:
        gym.register("RlSeverOnlyHere-v0", entry_point=TinyMultiDiscreteEnv, max_episode_steps=10)
    agent = make_agent("ppo", "RlSeverOnlyHere-v0", n_envs=2, runners=1)
    with pytest.raises(ConfigError, match="an env runner could not start: .*RlSeverOnlyHere-v0"):
        agent.learn(32, progress=False)
    agent.close()


def test_offpolicy_runners_leave_warmup_at_the_runs_step():
    """A runner's chunk crossing learning_starts: random actions only for the run's steps
    below it (the run's step advances by every runner's envs per vector step)."""
    exact = {"network.matmul_precision": "float32"}  # NumPy acts in float32
    cfg = tiny_config("td3", n_envs=4, runners=2, learning_starts=40, action_noise=0.0, **exact)
    agent = tiny_agent("td3", fill=0, n_envs=4, action_noise=0.0, **exact)
    runner = EnvRunner(type(agent), "Pendulum-v1", cfg, 0, 2)
    weights = [v.numpy() for v in agent.acting_variables()]
    out = runner.transitions(weights, 0, 20, 40)  # run steps 0, 4, ..., 76
    obs, actions = out["batch"].obs, out["batch"].actions
    greedy = np.stack([agent._greedy_unit(o).numpy() for o in obs])
    # Steps 0..36 (10 vector steps) are warm-up; from step 40 on the actor acts (no noise).
    np.testing.assert_allclose(actions[10:], greedy[10:], atol=1e-5)
    assert not np.allclose(actions[:10], greedy[:10], atol=1e-3)
    agent.close()


def test_multiworker_normalisation_is_refused():
    with pytest.raises(ConfigError, match="each worker's running statistics"):
        tiny_config("ppo", distribute="multiworker", normalize_obs=True).validate()
