"""Env runners without TensorFlow (rl_sever.runners.host_runner): which runs get them, that one
collects bit for bit what a local run collects (on-policy: discrete, Box and masked actions,
recurrent policies, normalised observations and rewards, acting through an inference server) or what a runner with a copy of the agent steps
(off-policy: warm-up, then the page's NumPy exploration), and that its process never imports
TensorFlow."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from envs.masked import MULTI_ID
from rl_sever.onpolicy.host_policy import policy_variables
from rl_sever.runners.group import host_runner_plans
from rl_sever.runners.host_runner import HostRunner
from rl_sever.runners.normalizer import merge_moments, stats_of
from tests.helpers import make_agent

ROOT = Path(__file__).resolve().parents[1]


def _fields(batch) -> list[np.ndarray]:
    return [np.asarray(x) for x in batch if not isinstance(x, tuple)]


def _local_and_plan(algo, env_id, overrides=None, **kwargs):
    """A local agent, its first rollout, and the plan of runner 0 of 1 of the same run."""
    local = make_agent(algo, env_id, overrides, **kwargs)
    expected = _fields(local.collector.collect().batch)
    planner = make_agent(algo, env_id, overrides, runners=1, **kwargs)  # no Ray: no collector
    plans = host_runner_plans(planner, central=False)
    planner.close()
    return local, expected, plans


@pytest.mark.parametrize("algo, env_id, overrides", [
    ("ppo", "CartPole-v1", {}),
    ("a2c", "Pendulum-v1", {}),  # Gaussian actions: the log-std, clipping to the bounds
    ("ppo", MULTI_ID, {"action_masks": "on"}),  # multi-discrete actions with masks
    ("ppo", "CartPole-v1", {"network.recurrent": "lstm", "network.recurrent_size": 8}),
    ("a2c", "Pendulum-v1", {"network.recurrent": "gru", "network.recurrent_size": 8}),
    ("ppo", "Pendulum-v1", {"normalize_obs": True, "normalize_reward": True}),
], ids=["discrete", "box", "masked_multidiscrete", "lstm", "gru_box", "normalised"])
def test_a_runner_without_tensorflow_collects_what_a_local_run_collects(algo, env_id, overrides):
    local, expected, plans = _local_and_plan(algo, env_id, overrides, n_envs=4, seed=3)
    assert plans is not None and len(plans) == 1
    runner = HostRunner(plans[0], 0)
    # The learner's statistics before its rollout (a fresh agent's), as the learner sends them.
    fresh = make_agent(algo, env_id, overrides, n_envs=4, seed=3)
    stats = None if fresh.normalizer is None else stats_of(fresh.normalizer)
    fresh.close()
    got = runner.rollout([v.numpy() for v in policy_variables(local.model)], 0, stats)
    fields = _fields(got["batch"])
    assert len(fields) == len(expected)  # log-probs and values (and masks) included
    for a, b in zip(fields, expected):
        np.testing.assert_array_equal(a, b)
    assert got["steps"] == local.config.n_steps * 4
    if stats is not None:  # the moments it saw rebuild the local run's statistics
        assert (runner.normalizer is None) == (local.normalizer is None)
        base = make_agent(algo, env_id, overrides, n_envs=4, seed=3).normalizer
        merge_moments(base, got["moments"])
        for (m, v, n), (m2, v2, n2) in zip(stats_of(base), stats_of(local.normalizer)):
            np.testing.assert_allclose(m, m2, rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(v, v2, rtol=1e-9, atol=1e-12)
            assert n == pytest.approx(n2)
    # A second rollout continues the episodes from the step the learner gives (and from the
    # statistics it has then).
    sent = None if stats is None else stats_of(local.normalizer)
    again = local.collector.collect().batch
    more = runner.rollout([v.numpy() for v in policy_variables(local.model)], got["steps"], sent)
    np.testing.assert_array_equal(more["batch"].obs, again.obs)
    np.testing.assert_array_equal(more["batch"].actions, again.actions)
    local.close()


def test_a_runner_acting_through_the_server_needs_no_policy_of_its_own(monkeypatch):
    from rl_sever.runners import host_runner

    local = make_agent("ppo", "CartPole-v1", n_envs=2, seed=4, host_act="off")
    expected = _fields(local.collector.collect().batch)
    planner = make_agent("ppo", "CartPole-v1", n_envs=2, seed=4, host_act="off", runners=1)
    assert host_runner_plans(planner, central=False) is None  # it would act with TensorFlow
    plan = host_runner_plans(planner, central=True)[0]
    planner.close()
    assert plan.policy is None
    # The server answers with the compiled act step of a copy with the same weights and sampler.
    server = make_agent("ppo", "CartPole-v1", n_envs=2, seed=4, host_act="off")
    asked = []

    def remote_act(ray, handle):
        def act(*inputs):
            asked.append(handle)
            return tuple(np.asarray(x) for x in server.behave_fn(*inputs))
        return act

    monkeypatch.setattr(host_runner, "RemoteAct", remote_act)
    runner = HostRunner(plan, 0, server="the server")
    assert runner.policy is None
    for a, b in zip(_fields(runner.rollout(None, 0)["batch"]), expected):
        np.testing.assert_array_equal(a, b)
    assert asked == ["the server"] * local.config.n_steps
    server.close()
    local.close()


@pytest.mark.parametrize("algo, overrides, applies, with_server", [
    ("ppo", {}, True, True),
    ("a2c", {}, True, True),
    ("impala", {}, True, True),
    ("ppo", {"normalize_obs": True}, True, True),
    ("ppo", {"normalize_reward": True}, True, True),
    ("ppo", {"network.recurrent": "gru", "network.recurrent_size": 8}, True, True),
    ("ppo", {"host_act": "off"}, False, True),  # the runner would act with the compiled step
    ("ppo", {"network.activation": "gelu"}, False, True),  # no NumPy form here
    ("sac", {}, True, True),
    ("td3", {}, True, True),
    ("sac", {"network.activation": "gelu"}, False, True),
])
def test_which_runs_get_runners_without_tensorflow(algo, overrides, applies, with_server):
    env_id = "Pendulum-v1" if algo in ("sac", "td3") else "CartPole-v1"
    agent = make_agent(algo, env_id, overrides, n_envs=2, runners=2)
    plans = host_runner_plans(agent, central=False)
    assert (plans is not None) == applies
    # With the inference server acting, only what the env steps through matters.
    assert (host_runner_plans(agent, central=True) is not None) == with_server
    if applies:  # each runner's share of the envs, seeded as a local run's sub-envs
        assert [(p.env["n_envs"], p.seed) for p in plans] == [(1, agent.config.seed),
                                                               (1, agent.config.seed + 1)]
    agent.close()


def test_a_class_that_acts_its_own_way_keeps_the_agents_runner():
    from agents.ppo import PPO
    from agents.sac import SAC

    class ClippedPPO(PPO):
        def env_actions(self, actions):
            return actions

    class GreedySAC(SAC):  # its own NumPy exploration: a method of a TensorFlow class
        def host_unit(self, out, rng):
            return np.tanh(np.split(out, 2, axis=-1)[0]).astype(np.float32)

    class ShiftedSAC(SAC):
        def to_env(self, unit_actions):
            return super().to_env(unit_actions) + 0.1

    class OwnActorSAC(SAC):
        def host_actor(self):
            return super().host_actor()

    class ClosureSAC(SAC):  # a closure would carry the agent into the runner
        def host_exploration(self):
            def explore(out, rng):
                return np.tanh(np.split(out, 2, axis=-1)[0]).astype(np.float32)
            return explore, {}

    class OwnCollectorPPO(PPO):
        def make_collector(self):
            return super().make_collector()

    for klass, env_id, algo in [(ClippedPPO, "CartPole-v1", "ppo"),
                                (GreedySAC, "Pendulum-v1", "sac"),
                                (ShiftedSAC, "Pendulum-v1", "sac"),
                                (OwnActorSAC, "Pendulum-v1", "sac"),
                                (ClosureSAC, "Pendulum-v1", "sac"),
                                (OwnCollectorPPO, "CartPole-v1", "ppo")]:
        agent = klass(env_id, make_agent(algo, env_id, runners=2, n_envs=2).config)
        assert host_runner_plans(agent, central=False) is None
        if klass is GreedySAC:  # its runners with a copy of the agent still act in NumPy
            assert agent.host_actor() is not None
        agent.close()


def test_a_page_without_numpy_exploration_acts_with_tensorflow_in_its_runners():
    from agents.sac import SAC

    class TensorFlowOnlySAC(SAC):
        def host_exploration(self):
            return None

    agent = TensorFlowOnlySAC("Pendulum-v1", make_agent("sac", "Pendulum-v1", runners=2,
                                                        n_envs=2).config)
    assert agent.host_actor() is None and host_runner_plans(agent, central=False) is None
    assert host_runner_plans(agent, central=True) is not None  # the server acts for them
    with pytest.raises(NotImplementedError, match="explores with TensorFlow only"):
        agent.host_unit(np.zeros((1, 2), np.float32), np.random.default_rng(0))
    agent.close()


@pytest.mark.parametrize("algo", ["sac", "td3"])
def test_an_offpolicy_runner_without_tensorflow_steps_what_one_with_the_agent_steps(algo):
    from rl_sever.runners.runner import EnvRunner, runner_config

    agent = make_agent(algo, "Pendulum-v1", n_envs=4, seed=2, runners=2)
    weights = [v.numpy() for v in agent.acting_variables()]
    plans = host_runner_plans(agent, central=False)
    with_agent = EnvRunner(type(agent), "Pendulum-v1", agent.config, 1, 2)
    without = HostRunner(plans[1], 1)
    assert runner_config(agent.config, 1, 2).seed == plans[1].seed
    for step, n_vec in [(0, 6), (24, 5)]:  # warm-up until step 16, then the NumPy actor
        a = with_agent.transitions(weights, step, n_vec, 16)
        b = without.transitions(weights, step, n_vec, 16)
        assert a["steps"] == b["steps"] == n_vec * 2
        for x, y in zip(_fields(a["batch"]), _fields(b["batch"])):
            np.testing.assert_array_equal(x, y)
    assert not np.array_equal(b["batch"].actions[0], b["batch"].actions[1])  # it explores
    agent.close()


SCRIPT = """
import hashlib, pickle, sys
plan, method, args = pickle.load(open(sys.argv[1], "rb"))
from rl_sever.runners.host_runner import HostRunner
from rl_sever.runners.normalizer import merge_moments, stats_of
out = getattr(HostRunner(plan, 0), method)(*args)
digest = hashlib.sha256()
for x in out["batch"]:
    if not isinstance(x, tuple):
        digest.update(x.tobytes())
import json
print(json.dumps({"tensorflow": "tensorflow" in sys.modules, "keras": "keras" in sys.modules,
                  "sha": digest.hexdigest()}))
"""


@pytest.mark.parametrize("algo", ["ppo", "sac"])
def test_a_runner_process_never_imports_tensorflow(algo, tmp_path):
    if algo == "ppo":
        local, expected, plans = _local_and_plan("ppo", "CartPole-v1", n_envs=2, seed=7)
        method, args = "rollout", ([v.numpy() for v in policy_variables(local.model)], 0)
    else:
        local = make_agent("sac", "Pendulum-v1", n_envs=2, seed=7, runners=1)
        plans = host_runner_plans(local, central=False)
        method, args = "transitions", ([v.numpy() for v in local.acting_variables()], 0, 8, 4)
        expected = _fields(getattr(HostRunner(plans[0], 0), method)(*args)["batch"])
    local.close()
    path = tmp_path / "plan.pkl"  # (a test's hand-off between processes, not an artifact)
    path.write_bytes(pickle.dumps((plans[0], method, args)))
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out == {"tensorflow": False, "keras": False, "sha": _sha(expected)}


def _sha(fields) -> str:
    import hashlib

    digest = hashlib.sha256()
    for x in fields:
        digest.update(np.ascontiguousarray(x).tobytes())
    return digest.hexdigest()


def test_a_runner_seeds_the_global_generators_from_its_seed():
    """A user's env drawing from Python's or NumPy's global generator draws the same in every
    run: each runner seeds them from its seed, as its copy of the agent did (the agent's weight
    initialisation then drew from NumPy's, so only Python's stream is the same as there)."""
    import random

    plans = host_runner_plans(make_agent("ppo", n_envs=2, seed=11, runners=2), central=False)
    agent = make_agent("ppo", n_envs=1, seed=plans[1].seed)
    python_draw = random.random()
    agent.close()
    draws = []
    for plan in (plans[1], plans[1], plans[0]):
        HostRunner(plan, 0)
        draws.append((random.random(), np.random.random()))
    assert draws[0] == draws[1] != draws[2]
    assert draws[0][0] == python_draw
