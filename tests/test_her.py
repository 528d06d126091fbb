"""Hindsight experience replay (rl_sever.offpolicy.her): relabelled goals come from the right
steps of the right episode (future, final, episode), also across the buffer's wrap and after
the ring overwrote an episode's start; relabelled rewards are the env's compute_reward; the
buffer's episode bounds survive save/load; every off-policy algorithm trains with it; a bad
combination is a one-line error."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from rl_sever import cli
from rl_sever.core.rollout import Step
from rl_sever.errors import ConfigError
from rl_sever.offpolicy.her import GoalLayout, HerReplayBuffer
from tests.helpers import SHIPPED, tiny_agent

OFFPOLICY = [a for a, k in SHIPPED.items() if k.mode == "off_policy"]
TRACER_ID = "RlSeverGoalTracer-v0"


class GoalTracer(gym.Env):
    """A goal env whose achieved goal is (episode number, step): a relabelled goal names the
    step it came from. Episodes last 3 to 6 steps (terminated, or truncated at 6)."""

    def __init__(self):
        box = gym.spaces.Box(-1e6, 1e6, (2,), np.float32)
        self.observation_space = gym.spaces.Dict(
            {"observation": gym.spaces.Box(-1, 1, (1,), np.float32), "achieved_goal": box,
             "desired_goal": box})
        self.action_space = gym.spaces.Box(-1, 1, (1,), np.float32)
        self.episode, self.t, self.length = -1, 0, 0

    def _obs(self):
        return {"observation": np.zeros(1, np.float32),
                "achieved_goal": np.array([self.episode, self.t], np.float32),
                "desired_goal": np.array([-1, -1], np.float32)}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.episode, self.t = self.episode + 1, 0
        self.length = int(self.np_random.integers(3, 7))
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        obs = self._obs()
        reward = float(self.compute_reward(obs["achieved_goal"], obs["desired_goal"], {}))
        return obs, reward, self.t == self.length and self.length < 6, self.t == 6, {}

    def compute_reward(self, achieved_goal, desired_goal, info):
        return -np.any(np.asarray(achieved_goal) != np.asarray(desired_goal), axis=-1).astype(
            np.float32)


if TRACER_ID not in gym.registry:
    gym.register(TRACER_ID, entry_point=GoalTracer)


def tracer_env(n_envs: int):
    return gym.make_vec(TRACER_ID, num_envs=n_envs, vectorization_mode="sync",
                        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP},
                        wrappers=[gym.wrappers.FlattenObservation])


def fill(buf, env, steps: int, seed: int | None = 0):
    """`steps` vector steps of `env` (reset first, as a collector does) into `buf`."""
    obs, _ = env.reset(seed=seed)
    for _ in range(steps):
        actions = np.zeros((env.num_envs, 1), np.float32)
        next_obs, reward, term, trunc, info = env.step(actions)
        reached = next_obs.copy()
        for i in np.flatnonzero(term | trunc):
            reached[i] = info["final_obs"][i]
        buf.add(Step(obs, actions, reward, term, trunc, reached))
        obs = next_obs


def filled_buffer(strategy: str, capacity: int, steps: int, n_envs: int = 2):
    """A HerReplayBuffer filled by `steps` vector steps of GoalTracer (flattened as the agent
    sees it), and its goal layout."""
    single = GoalTracer()
    layout = GoalLayout(single.observation_space, single.compute_reward)
    buf = HerReplayBuffer(capacity, n_envs, (5,), np.float32, (1,), goals=layout,
                          strategy=strategy, n_sampled_goal=4, seed=0)
    fill(buf, tracer_env(n_envs), steps)
    return buf, layout


def assert_goals_from_own_episode(buf, g, n=4000):
    t, e = buf.sample_indices(n)
    batch = buf.gather(t, e)
    relabelled = batch.obs[:, g.desired.start] >= 0
    assert relabelled.any()
    np.testing.assert_array_equal(batch.obs[relabelled, g.desired.start],
                                  batch.obs[relabelled, g.achieved.start])


@pytest.mark.parametrize("strategy", ["future", "final", "episode"])
# No wrap; wrapped and overwritten; episodes (3-6 steps) longer than the ring's 2 rows.
@pytest.mark.parametrize("capacity, steps", [(400, 60), (40, 97), (4, 31)])
def test_relabelled_goals_come_from_the_right_steps(strategy, capacity, steps):
    buf, g = filled_buffer(strategy, capacity, steps)
    t, e = buf.sample_indices(4000)
    batch = buf.gather(t, e)
    # Achieved goal of a step's reached observation: (episode, step number in it, from 1).
    ep, step = batch.obs[:, g.achieved].T  # the transition's own (episode, step before it)
    goal_ep, goal_step = batch.obs[:, g.desired].T
    relabelled = goal_ep >= 0
    assert 0.7 < relabelled.mean() < 0.9  # n_sampled_goal 4: 80% relabelled
    np.testing.assert_array_equal(batch.obs[:, g.desired], batch.next_obs[:, g.desired])
    assert np.all(goal_ep[relabelled] == ep[relabelled])  # the same episode, always
    mine = goal_step[relabelled] - step[relabelled]  # 1: this transition's own reached step
    ended = buf.ep_end[t, e][relabelled] >= 0
    end_step = (buf.ep_end[t, e] - t) % buf.rows + step + 1  # step number of the last reached
    if strategy == "future":
        assert mine.min() >= 1 and np.any(mine > 1)
    elif strategy == "final":
        np.testing.assert_array_equal(goal_step[relabelled][ended], end_step[relabelled][ended])
    else:
        assert mine.min() < 1 and mine.max() > 1  # earlier and later steps of the episode
    # Every goal was reached by a step still stored for that sub-env (none from rows the ring
    # overwrote, none from another sub-env).
    rows = np.arange(buf.filled_rows)
    stored = {(env, *buf.next_observations(rows, np.full(rows.shape, env))[r, g.achieved])
              for env in range(buf.n_envs) for r in range(len(rows))}
    assert all((env, *goal) in stored
               for env, goal in zip(e[relabelled], batch.obs[relabelled][:, g.desired]))
    # Relabelled rewards are the env's compute_reward of the reached observation.
    np.testing.assert_array_equal(
        batch.rewards, g.rewards(batch.next_obs[:, g.achieved], batch.next_obs[:, g.desired]))
    assert np.any(batch.rewards[relabelled] == 0.0) and np.all(batch.rewards[~relabelled] == -1)


@pytest.mark.parametrize("strategy", ["future", "episode"])
def test_a_resume_ends_the_episodes_running_at_the_save(strategy, tmp_path):
    buf, g = filled_buffer(strategy, 400, 22)  # mid-episode in both sub-envs
    assert (buf.cur_len > 0).all()
    buf.save(tmp_path / "replay")
    fresh, _ = filled_buffer(strategy, 400, 0)
    fresh.load(tmp_path / "replay")
    env = tracer_env(2)
    fill(fresh, env, 0)  # the tracer's episode numbers continue after the saved ones
    for sub in env.unwrapped.envs:
        sub.unwrapped.episode = 100
    fill(fresh, env, 12, seed=None)
    assert_goals_from_own_episode(fresh, g)


def test_episode_bounds_survive_save_and_load(tmp_path):
    buf, g = filled_buffer("future", 40, 97)
    buf.save(tmp_path / "replay")
    fresh, _ = filled_buffer("future", 40, 0)
    fresh.load(tmp_path / "replay")
    for name in ("ep_start", "obs", "rewards", "pos"):
        np.testing.assert_array_equal(getattr(fresh, name), getattr(buf, name))
    ended = buf.ep_end >= 0  # finished episodes keep their end; running ones end at the newest
    np.testing.assert_array_equal(fresh.ep_end[ended], buf.ep_end[ended])
    assert (~ended).any() and np.all(fresh.ep_end[~ended] == (buf.pos - 1) % buf.rows)
    assert np.all(fresh.cur_start == buf.pos) and not fresh.cur_len.any()
    t, e = np.arange(20) % buf.rows, np.arange(20) % 2
    np.testing.assert_array_equal(fresh.gather(t, e).obs[:, g.achieved], buf.gather(t, e).obs[:, g.achieved])


@pytest.mark.parametrize("algo", OFFPOLICY)
def test_every_off_policy_algorithm_trains_with_her(algo, tmp_path):
    agent = tiny_agent(algo, "BitFlippingContinuous-v0", logdir=tmp_path, fill=0,
                       **{"her.strategy": "future"})
    assert isinstance(agent.replay, HerReplayBuffer)
    agent.learn(120, progress=False)
    path = agent.save()
    loaded = type(agent).load(agent.run_dir)
    np.testing.assert_array_equal(loaded.replay.ep_end, agent.replay.ep_end)
    assert path and int(loaded.global_step.numpy()) == 120


def test_bad_combinations_are_one_line_errors(tmp_path, capsys):
    with pytest.raises(ConfigError, match="goal-conditioned"):
        tiny_agent("sac", "Pendulum-v1", fill=0, **{"her.strategy": "future"})
    with pytest.raises(ConfigError, match="n_step"):
        tiny_agent("sac", "BitFlippingContinuous-v0", fill=0, n_step=3,
                   **{"her.strategy": "future"})
    with pytest.raises(ConfigError, match="tf:"):
        tiny_agent("sac", "tf:Pendulum-v1", fill=0, **{"her.strategy": "final"})
    code = cli.main(["train", "td3", "Pendulum-v1", "--steps", "10", "--logdir", str(tmp_path),
                     "--no-progress", "--set", "her.strategy=future"])
    err = capsys.readouterr().err
    assert code == 2 and "goal-conditioned" in err and "Traceback" not in err
    code = cli.main(["train", "ppo", "CartPole-v1", "--steps", "10", "--logdir", str(tmp_path),
                     "--no-progress", "--set", "her.strategy=future"])
    err = capsys.readouterr().err
    assert code == 2 and "off-policy agents" in err and len(err.strip().splitlines()) == 1
