"""Dict observations with images (envs.dict_obs, rl_sever.nn.encoders.DictEncoder): kept as a
Dict, one encoder per key (a CNN for the image, the vectors as they are, a user's model where
given), images stored as uint8 in the buffers, the combined encoder in the audit; every
algorithm trains, saves, loads, predicts and exports on them."""

from __future__ import annotations

import gymnasium as gym
import keras
import numpy as np
import pytest
import tensorflow as tf

from rl_sever.errors import ConfigError, RLSeverError
from tests.helpers import ALGOS, ONPOLICY, tiny_agent

DICT_ID = "RlSeverDictImage-v0"
DICT_BOX_ID = "RlSeverDictImageBox-v0"


class DictImageEnv(gym.Env):
    """A camera (16x16x3 uint8) showing a bar at the target side, a position (2 floats) and a
    mode (Discrete(3)); reward 1 for the action pointing at the target. Episodes of 8 steps."""

    def __init__(self, continuous: bool = False):
        self.observation_space = gym.spaces.Dict({
            "camera": gym.spaces.Box(0, 255, (16, 16, 3), np.uint8),
            "position": gym.spaces.Box(-1.0, 1.0, (2,), np.float32),
            "mode": gym.spaces.Discrete(3)})
        self.action_space = (gym.spaces.Box(-1.0, 1.0, (1,), np.float32) if continuous
                             else gym.spaces.Discrete(2))
        self.continuous, self.t, self.side = continuous, 0, 0

    def _obs(self):
        camera = np.zeros((16, 16, 3), np.uint8)
        camera[:, 8 * self.side:8 * self.side + 8] = 200
        pos = np.array([self.t / 8, self.side * 2 - 1], np.float32)
        return {"camera": camera, "position": pos, "mode": self.t % 3}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.side = 0, int(self.np_random.integers(2))
        return self._obs(), {}

    def step(self, action):
        choice = int(np.asarray(action).reshape(-1)[0] > 0) if self.continuous else int(action)
        reward = float(choice == self.side)
        self.t += 1
        self.side = int(self.np_random.integers(2))
        return self._obs(), reward, False, self.t >= 8, {}


for _id, _kw in ((DICT_ID, {}), (DICT_BOX_ID, {"continuous": True})):
    if _id not in gym.registry:
        gym.register(_id, entry_point=DictImageEnv, kwargs=_kw)


def env_for(algo: str) -> str:
    return DICT_ID if algo in ONPOLICY else DICT_BOX_ID


def dict_obs(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    env = DictImageEnv()
    out = {"camera": [], "position": [], "mode": []}
    for i in range(n):
        obs = env.reset(seed=seed + i)[0]
        for k in out:
            out[k].append(obs[k])
    return {"camera": np.stack(out["camera"]), "position": np.stack(out["position"]),
            "mode": np.eye(3, dtype=np.float32)[out["mode"]]}


def test_the_env_factory_keeps_images_in_a_dict():
    from envs import make_vec_env

    env = make_vec_env(DICT_ID, 2, seed=0)
    space = env.single_observation_space
    assert isinstance(space, gym.spaces.Dict)
    assert space["camera"].dtype == np.uint8 and space["camera"].shape == (16, 16, 3)
    assert space["mode"].shape == (3,) and space["mode"].dtype == np.float32  # one-hot
    obs, _ = env.reset()
    assert obs["camera"].dtype == np.uint8 and obs["mode"].sum(axis=1).tolist() == [1.0, 1.0]
    env.close()


@pytest.mark.parametrize("algo", ALGOS)
def test_every_algorithm_trains_saves_loads_and_exports(algo, tmp_path):
    from rl_sever.core.export import export_policy

    agent = tiny_agent(algo, env_for(algo), logdir=tmp_path, fill=0,
                       **({"learning_starts": 16} if algo not in ONPOLICY else {}))
    assert type(agent.encoder if algo not in ONPOLICY else agent.model.encoder).__name__ == \
        "DictEncoder"
    agent.learn(64, progress=False)
    # Images stay uint8 in the buffers.
    stored = (agent.collector.buffer.arrays().obs if algo in ONPOLICY else agent.replay.obs)
    assert stored["camera"].dtype == np.uint8 and stored["camera"].any()
    agent.save()
    obs = dict_obs(5)
    actions = agent.predict(obs)
    loaded = type(agent).load(agent.run_dir)
    np.testing.assert_array_equal(loaded.predict(obs), actions)
    single = agent.predict({k: v[0] for k, v in obs.items()})
    # One row against five: matmul kernels may differ by batch size in the last bits (AVX2).
    np.testing.assert_allclose(single, actions[0], rtol=1e-5, atol=1e-6)
    path = export_policy(agent, tmp_path / "policy")
    serve = tf.saved_model.load(str(path)).signatures["serving_default"]
    served = serve(**{f"observation_{k}": tf.constant(v) for k, v in obs.items()})["action"]
    np.testing.assert_allclose(served.numpy(), actions, atol=1e-5)


def test_the_audit_sees_one_encoder_of_every_key():
    agent = tiny_agent("ppo", DICT_ID)
    encoder = agent.model.encoder
    assert set(encoder.parts) == {"camera", "position", "mode"}
    assert encoder.parts["position"] is None and encoder.parts["camera"] is not None
    assert encoder.out_dim == encoder.parts["camera"].out_dim + 2 + 3
    assert agent.flow_modules()["encoder"] == encoder.weights
    agent.learn(32, progress=False)  # the audited first update passes its contract


def test_a_user_model_per_key():
    model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Flatten(),
                              keras.layers.Dense(7)])
    agent = tiny_agent("a2c", DICT_ID, encoder={"camera": model})
    assert agent.model.encoder.parts["camera"].net is model
    assert agent.model.encoder.out_dim == 7 + 2 + 3
    with pytest.raises(ConfigError, match="keys"):
        tiny_agent("a2c", DICT_ID, encoder={"lidar": model})


def test_bad_inputs_are_one_line_errors():
    agent = tiny_agent("ppo", DICT_ID)
    with pytest.raises(RLSeverError, match="keys"):
        agent.predict(np.zeros((2, 5), np.float32))
    with pytest.raises(RLSeverError, match="camera"):
        agent.predict({**dict_obs(2), "camera": np.zeros((2, 8, 8, 3), np.uint8)})
    with pytest.raises(ConfigError, match="vae"):
        tiny_agent("ppo", DICT_ID, aux=["vae"], **{"network.shared_encoder": True})


def test_normalisation_per_vector_key(tmp_path):
    from rl_sever.core.export import export_policy

    agent = tiny_agent("ppo", DICT_ID, logdir=tmp_path, normalize_obs=True)
    agent.learn(64, progress=False)
    stats = agent.normalizer.obs_rms
    assert set(stats) == {"position", "mode"}  # the image is scaled inside the network
    assert np.all(stats["position"].count > 1) and stats["position"].var.any()
    obs = dict_obs(6)
    actions = agent.predict(obs)
    served = tf.saved_model.load(str(export_policy(agent, tmp_path / "policy"))).signatures[
        "serving_default"](**{f"observation_{k}": tf.constant(v) for k, v in obs.items()})
    np.testing.assert_array_equal(served["action"].numpy(), actions)
    agent.save()
    loaded = type(agent).load(agent.run_dir)
    np.testing.assert_array_equal(loaded.normalizer.obs_rms["position"].mean, stats["position"].mean)
    np.testing.assert_array_equal(loaded.predict(obs), actions)


ONE_KEY_ID = "RlSeverDictOneImage-v0"
if ONE_KEY_ID not in gym.registry:
    gym.register(ONE_KEY_ID, entry_point=lambda: gym.wrappers.FilterObservation(
        DictImageEnv(), ["camera"]), max_episode_steps=8)


def test_a_dict_of_one_image_key():
    for algo, env in (("ppo", ONE_KEY_ID), ("a2c", ONE_KEY_ID)):
        agent = tiny_agent(algo, env, host_act="off")
        agent.learn(32, progress=False)
        assert agent.predict({"camera": dict_obs(3)["camera"]}).shape == (3,)


@pytest.mark.parametrize("algo", ONPOLICY)
def test_a_recurrent_policy_on_dict_observations(algo):
    agent = tiny_agent(algo, DICT_ID, **{"network.recurrent": "gru", "network.recurrent_size": 8})
    agent.learn(32, progress=False)
    actions, state = agent.predict(dict_obs(4))
    assert actions.shape == (4,) and state.shape == (4, 8)


def test_the_replay_stores_image_frames_once(tmp_path):
    """With a Dict observation the replay keeps each camera frame once (the next observation's
    frame is the next row's, kept aside only at episode ends and the newest row): batches equal
    a buffer storing every next observation, before and after save/load and the ring's wrap."""
    from envs import make_vec_env
    from rl_sever.core.rollout import Step
    from rl_sever.offpolicy.replay import ReplayBuffer

    env = make_vec_env(DICT_BOX_ID, 2, seed=0)
    space = env.single_observation_space
    shape = {k: s.shape for k, s in space.spaces.items()}
    dtype = {k: s.dtype for k, s in space.spaces.items()}
    shared = ReplayBuffer(40, 2, shape, dtype, (1,), share_frames=True, seed=3)
    full = ReplayBuffer(40, 2, shape, dtype, (1,), share_frames=False, seed=3)
    assert shared.shared == ["camera"] and set(shared.next_obs) == {"position", "mode"}
    obs, _ = env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(33):  # episodes of 8 steps; 20 rows: wrapped
        actions = rng.uniform(-1, 1, (2, 1)).astype(np.float32)
        next_obs, reward, term, trunc, info = env.step(actions)
        from envs.autoreset import reached_observations

        step = Step(obs, actions, reward, term, trunc, reached_observations(next_obs, info))
        shared.add(step)
        full.add(step)
        obs = next_obs
    shared.save(tmp_path / "replay")
    loaded = ReplayBuffer(40, 2, shape, dtype, (1,), share_frames=True, seed=3)
    loaded.load(tmp_path / "replay")
    t, e = np.arange(40) % 20, np.arange(40) % 2
    want = full.gather(t, e)
    for buf in (shared, loaded):
        got = buf.gather(t, e)
        for k in shape:
            np.testing.assert_array_equal(got.next_obs[k], want.next_obs[k])
            np.testing.assert_array_equal(got.obs[k], want.obs[k])
    env.close()


def test_the_dict_encoder_is_severed_for_the_head_that_must_not_train_it():
    """encoder_grad_from: critic — the policy loss reaches no part of the Dict encoder (the
    camera's CNN included: None or exact zeros), the value loss reaches it."""
    from tests.helpers import flows, none_or_zero, term_gradients

    agent = tiny_agent("ppo", DICT_ID, **{"network.encoder_grad_from": "critic"})
    batch = agent.collector.collect().batch
    policy = term_gradients(agent, batch, "policy")
    assert none_or_zero(policy["encoder"]) and flows(policy["actor"])
    value = term_gradients(agent, batch, "value")
    camera = agent.model.encoder.parts["camera"].weights
    grads = dict(zip([id(v) for v in agent.flow_modules()["encoder"]], value["encoder"]))
    assert flows([grads[id(v)] for v in camera])
