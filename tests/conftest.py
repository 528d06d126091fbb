"""Shared test set-up: quiet TensorFlow, deterministic seeds."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # tests are CPU-only and deterministic

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    import keras

    keras.utils.set_random_seed(0)
    yield


# --- Shared helpers for the agent tests (gradients, smoke, save/load, logging, ...) ----------

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402

TINY_MD_ID = "RlSeverTinyMultiDiscrete-v0"
TINY_MD_HORIZON = 10  # TimeLimit truncation


class TinyMultiDiscreteEnv(gym.Env):
    """A MultiDiscrete([3, 2]) test env with both terminated and truncated episodes.

    Observation: [t / horizon, a - 1, 2b - 1] for a hidden target (a, b) drawn per episode,
    so the step counter of a final observation tells it apart from a reset observation.
    Reward: one per component of the action equal to the target; the episode terminates
    when both are right, else the TimeLimit truncates it after `TINY_MD_HORIZON` steps.
    """

    metadata = {"render_modes": []}

    def __init__(self):
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
        self.action_space = gym.spaces.MultiDiscrete([3, 2])
        self.t, self.a, self.b = 0, 0, 0

    def _obs(self):
        return np.array([self.t / TINY_MD_HORIZON, self.a - 1, 2 * self.b - 1], np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        self.a, self.b = int(self.np_random.integers(3)), int(self.np_random.integers(2))
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        hits = int(action[0] == self.a) + int(action[1] == self.b)
        return self._obs(), float(hits), hits == 2, False, {}


if TINY_MD_ID not in gym.registry:
    gym.register(TINY_MD_ID, entry_point=TinyMultiDiscreteEnv, max_episode_steps=TINY_MD_HORIZON)


def _agent_class(algo: str):
    from rl_sever.registry import get_agent_class

    return get_agent_class(algo)


def tiny_config(algo: str, overrides: dict | None = None, **kwargs):
    """A fast config for `algo` ("ppo" / "a2c"): 2 envs, 16-step rollouts, one 16-unit layer,
    2 evaluation episodes. `overrides` (dotted keys allowed) and `kwargs` win."""
    from rl_sever.config import update

    klass = _agent_class(algo)
    base = {"n_envs": 2, "n_steps": 16, "total_steps": 64, "eval_episodes": 2,
            "network.hidden_sizes": [16]}
    if algo == "ppo":
        base.update(batch_size=16, n_epochs=2)
    values = {**base, **(overrides or {}), **kwargs}
    # Nested keys first so a `network` mapping in the overrides can still replace them.
    ordered = dict(sorted(values.items(), key=lambda kv: "." not in kv[0]))
    return update(klass.config_cls(), ordered)


def make_agent(algo: str, env_id: str = "CartPole-v1", overrides: dict | None = None, *,
               logdir=None, **kwargs):
    """A tiny agent of `algo` on `env_id` (no run folder unless `logdir` is given)."""
    return _agent_class(algo)(env_id, tiny_config(algo, overrides, **kwargs), logdir=logdir)


def collect_batch(agent) -> dict[str, np.ndarray]:
    """One rollout collected by the agent's own collector, copied out of the buffer."""
    obs, _ = agent.env.reset(seed=agent.config.seed)
    _, batch, _ = agent.make_collector().collect(obs)
    return {k: np.array(v, copy=True) for k, v in batch.items()}


def read_event_tensors(run_dir) -> dict[str, list[tuple[int, np.ndarray]]]:
    """Every summary of every event file of a run, in writing order: tag -> [(step, value)].

    Reads the raw records (not EventAccumulator, which silently purges out-of-order steps),
    so duplicated or decreasing steps stay visible.
    """
    from pathlib import Path

    import tensorflow as tf
    from tensorboard.compat.proto import event_pb2

    files = []
    for path in Path(run_dir).glob("events.out.tfevents.*"):
        events = [event_pb2.Event.FromString(r.numpy()) for r in tf.data.TFRecordDataset(str(path))]
        if events:
            files.append((events[0].wall_time, path.name, events))
    out: dict[str, list[tuple[int, np.ndarray]]] = {}
    for _, _, events in sorted(files, key=lambda f: (f[0], f[1])):
        for event in events:
            if event.HasField("summary"):
                for value in event.summary.value:
                    out.setdefault(value.tag, []).append((event.step, tf.make_ndarray(value.tensor)))
    return out


@pytest.fixture
def tiny_md_env_id() -> str:
    return TINY_MD_ID
