"""NaN/inf guards at the run's boundaries and memory checked before allocation (issue 13)."""

from __future__ import annotations

import re

import gymnasium as gym
import numpy as np
import pytest
import tensorflow as tf
from gymnasium import spaces

from rl_sever import cli
from rl_sever.core.agent import Agent
from rl_sever.core.finite import FiniteGuard, NonFiniteError
from tests.helpers import tiny_agent

FAULTY = "rl_sever_tests/Faulty-v0"


class Faulty(gym.Env):
    """A 3-float observation, a 1-D Box action; at step `at` of an episode, on the sub-envs
    reset with an odd seed (sub-env 1 of a seed-0 vector env), `fault` turns NaN."""

    observation_space = spaces.Box(-np.inf, np.inf, (3,), np.float32)
    action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)

    def __init__(self, fault: str | None = None, at: int = 5):
        self.fault, self.at, self.t, self.odd = fault, at, 0, False

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if seed is not None:
            self.odd = seed % 2 == 1
        self.t = 0
        return np.zeros(3, np.float32), {}

    def step(self, action):
        self.t += 1
        bad = self.odd and self.t == self.at
        obs = np.full(3, np.nan if bad and self.fault == "obs" else 0.1, np.float32)
        reward = np.nan if bad and self.fault == "reward" else float(-np.square(action).sum())
        return obs, reward, False, self.t >= 50, {}


gym.register(FAULTY, entry_point=Faulty)
for _fault in ("obs", "reward"):
    gym.register(f"rl_sever_tests/Faulty-{_fault}-v0", entry_point=Faulty,
                 kwargs={"fault": _fault})


@pytest.mark.parametrize("algo", ["ppo", "sac"])
@pytest.mark.parametrize("fault, what", [("obs", "observation"), ("reward", "reward")])
def test_a_non_finite_observation_or_reward_stops_the_run_naming_it(algo, fault, what):
    agent = tiny_agent(algo, f"rl_sever_tests/Faulty-{fault}-v0", fill=0, n_envs=2)
    # n_envs=2: step 5 of sub-env 1 is the vector step that starts at env step 8.
    with pytest.raises(NonFiniteError, match=rf"non-finite {what} \(nan\) from sub-env 1 at "
                       r"env step 8; the run stopped"):
        agent.learn(64, progress=False)
    agent.close()


def test_a_non_finite_action_stops_the_run_naming_it():
    agent = tiny_agent("ppo", FAULTY, fill=0, eval_episodes=0)

    def poison_policy(agent, _):
        agent.model.pi.kernels[-1].assign(tf.fill(agent.model.pi.kernels[-1].shape, np.nan))

    with pytest.raises(NonFiniteError, match=r"non-finite action \(nan\) from sub-env 0 "
                       r"\(and 1 more\) at env step 32"):
        agent.learn(96, progress=False, callback=poison_policy)
    agent.close()


@pytest.mark.parametrize("algo, module", [("ppo", "vf"), ("sac", "critic")])
def test_a_late_non_finite_loss_stops_before_a_checkpoint_stores_it(algo, module, tmp_path):
    # Checkpoints every iteration; the network turns NaN after the second one was saved.
    extra = {"learning_starts": 16} if algo == "sac" else {}
    agent = tiny_agent(algo, FAULTY, fill=0, logdir=tmp_path, eval_episodes=0,
                       checkpoint_every=1, **extra)
    calls = []

    def poison(agent, _):
        calls.append(1)
        if len(calls) == 2:
            target = agent.model.vf if module == "vf" else agent.critic
            for v in target.trainable_variables:
                v.assign(tf.fill(v.shape, np.nan))

    with pytest.raises(NonFiniteError, match="non-finite .*(loss|gradient norm).*the last "
                       "checkpoint, .*ckpt-\\d+, predates the fault") as failure:
        agent.learn(2000, progress=False, callback=poison)
    saved = int(re.search(r"ckpt-(\d+)", str(failure.value)).group(1))
    assert saved <= int(agent.global_step.numpy())
    agent.close()
    restored = Agent.load(agent.run_dir)
    assert int(restored.global_step.numpy()) == saved
    variables = [v for vs in restored.flow_modules().values() for v in vs]
    assert variables and all(np.isfinite(v.numpy()).all() for v in variables)
    restored.close()


def test_warn_mode_warns_once_per_kind_and_off_checks_nothing():
    bad = np.array([[0.0], [np.inf]])
    with pytest.warns(UserWarning, match=r"non-finite reward \(inf\) from sub-env 1 at env step 7"):
        FiniteGuard("warn").check("reward", bad, 7)
    guard = FiniteGuard("warn")
    with pytest.warns(UserWarning) as caught:
        for step in range(3):
            guard.check("reward", bad, step)
    assert len(caught) == 1
    FiniteGuard("off").check("reward", bad, 0)
    FiniteGuard("stop").check("frames", np.zeros((2, 4), np.uint8), 0)  # integers: no check
    with pytest.raises(Exception, match="check_finite must be stop, warn or off"):
        tiny_agent("ppo", FAULTY, check_finite="maybe")


def test_a_buffer_larger_than_memory_is_refused_before_allocation(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("rl_sever.core.resources.available_memory", lambda: 8 * 1024**3)
    code = cli.main(["train", "sac", "Pixels/Pendulum-v1", "--steps", "100", "--logdir",
                     str(tmp_path), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    found = re.search(r"the replay buffer \(1,000,000 transitions of uint8 observations .*\) "
                      r"needs ([\d.]+) GiB, but only 8.0 GiB of memory are available: lower "
                      r"buffer_size \(e.g. buffer_size=([\d,]+)", err)
    assert found, err
    assert float(found.group(1)) > 8.0
    assert not list(tmp_path.iterdir())  # no run folder left behind
