"""Action masks (rl_sever.core.action_masks, docs/spaces.md): forbidden actions get probability
zero when acting (host and compiled), in the loss and entropy, in evaluation, predict and the
exported policy; masks come from info["action_mask"] or action_masks() and are stored with the
batch; bad masks and bad combinations are one-line errors."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import tensorflow as tf

from envs.masked import DISCRETE_ID, MULTI_ID, InvalidActionPenaltyEnv
from rl_sever import cli
from rl_sever.config.spaces import action_spec
from rl_sever.errors import ConfigError, RLSeverError
from rl_sever.nn.distributions import ActionHead
from tests.helpers import ONPOLICY, tiny_agent

INFO_ONLY_ID = "RlSeverMaskInInfoOnly-v0"
WRONG_SHAPE_ID = "RlSeverMaskWrongShape-v0"


class InfoOnlyMasks(gym.Wrapper):
    """The masked env with its action_masks() method hidden: masks only in the info."""

    def __getattr__(self, name):
        if name == "action_masks":
            raise AttributeError(name)
        return super().__getattr__(name)

    def has_wrapper_attr(self, name):
        return False if name == "action_masks" else super().has_wrapper_attr(name)


class WrongShapeMasks(gym.Wrapper):
    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        return obs, {"action_mask": info["action_mask"][:-1]}

    def step(self, action):
        obs, r, term, trunc, info = self.env.step(action)
        return obs, r, term, trunc, {"action_mask": info["action_mask"][:-1]}

    def action_masks(self):
        return self.env.unwrapped.action_masks()[:-1]


for _id, _wrap in ((INFO_ONLY_ID, InfoOnlyMasks), (WRONG_SHAPE_ID, WrongShapeMasks)):
    if _id not in gym.registry:
        gym.register(_id, entry_point=lambda wrap=_wrap: wrap(InvalidActionPenaltyEnv()),
                     max_episode_steps=100)


def invalid_taken(batch) -> int:
    """Forbidden actions in a rollout: the action's mask entries (per component)."""
    masks, actions = batch.action_mask, batch.actions
    if actions.ndim == 2:  # Discrete: [T, N]
        return int((~np.take_along_axis(masks, actions[..., None], -1)).sum())
    starts = np.concatenate([[0], np.cumsum([3, 4])[:-1]])
    picked = np.take_along_axis(masks, actions + starts, -1)
    return int((~picked).sum())


@pytest.mark.parametrize("kind", ["discrete", "multi"])
def test_masked_logits_get_probability_zero_and_finite_entropy(kind):
    space = gym.spaces.Discrete(4) if kind == "discrete" else gym.spaces.MultiDiscrete([2, 3])
    head = ActionHead(action_spec(space))
    logits = tf.constant(np.random.default_rng(0).standard_normal((64, head.param_dim)), tf.float32)
    mask = np.random.default_rng(1).random((64, head.param_dim)) < 0.5
    mask[:, 0] = True
    if kind == "multi":
        mask[:, 2] = True
    dist = head.distribution(logits, mask=tf.constant(mask))
    probs = (tf.nn.softmax(dist.logits) if kind == "discrete"
             else tf.concat([tf.nn.softmax(p.logits) for p in dist.parts], -1))
    assert np.all(probs.numpy()[~mask] == 0.0)
    assert np.all(np.isfinite(dist.entropy().numpy()))
    samples = head.sample(dist, tf.constant([1, 2])).numpy()
    picked = (mask[np.arange(64), samples] if kind == "discrete"
              else mask[np.arange(64)[:, None], samples + np.array([0, 2])])
    assert picked.all()


@pytest.mark.parametrize("algo", ONPOLICY)  # every page with discrete actions
@pytest.mark.parametrize("env_id", [DISCRETE_ID, MULTI_ID])
@pytest.mark.parametrize("host_act", ["on", "off"])
def test_rollouts_store_masks_and_never_take_a_forbidden_action(algo, env_id, host_act):
    agent = tiny_agent(algo, env_id, n_envs=4, n_steps=64, host_act=host_act)
    assert agent.masked
    batch = agent.collector.collect().batch
    assert batch.action_mask.shape == (64, 4, agent.layout.mask_dim)
    assert invalid_taken(batch) == 0 and batch.rewards.min() > -100
    # The stored masks are the ones the observations show (the env puts them in the obs).
    np.testing.assert_array_equal(batch.action_mask, batch.obs[..., agent.layout.mask_dim:] > 0.5)
    # The update's loss reads them: log-probs of the stored actions equal the behaviour ones.
    mb = agent._minibatch(agent.prepare_fn(*batch), None)
    out = agent.forward(mb)
    np.testing.assert_allclose(out["logp"], mb["logp_old"], atol=2e-5)
    assert np.isfinite(out["entropy"].numpy()).all()


def test_a_masked_policy_never_takes_a_forbidden_action_in_100k_steps():
    agent = tiny_agent("a2c", DISCRETE_ID, n_envs=16, n_steps=25, total_steps=100_000,
                       learning_rate=1e-3, **{"network.hidden_sizes": [32]})
    stats = []
    agent.learn(100_000, progress=False, callback=lambda a, info: stats.append(
        a.collector.buffer.arrays().rewards.min()) or True)
    assert int(agent.global_step.numpy()) == 100_000
    assert min(stats) > -100  # an invalid action would end an episode with -100


def test_masks_in_the_info_only_need_action_masks_on():
    assert not tiny_agent("ppo", INFO_ONLY_ID).masked  # auto: no action_masks() method
    agent = tiny_agent("ppo", INFO_ONLY_ID, action_masks="on", n_steps=32)
    assert invalid_taken(agent.collector.collect().batch) == 0


def test_evaluate_predict_and_export_apply_the_masks(tmp_path):
    from rl_sever.core.evaluation import evaluate
    from rl_sever.core.export import export_policy

    agent = tiny_agent("ppo", DISCRETE_ID)
    out = evaluate(agent, 4)
    assert out["mean_reward"] > -100 * 0.5  # an invalid action costs 100 and ends the episode
    obs = np.stack([InvalidActionPenaltyEnv().reset(seed=i)[0] for i in range(8)])
    masks = obs[:, 6:] > 0.5
    actions = agent.predict(obs, action_masks=masks)
    assert masks[np.arange(8), actions].all()
    path = export_policy(agent, tmp_path / "policy")
    served = tf.saved_model.load(str(path)).signatures["serving_default"](
        observation=tf.constant(obs), action_mask=tf.constant(masks))["action"].numpy()
    np.testing.assert_array_equal(served, actions)


def test_bad_masks_and_combinations_are_one_line_errors(tmp_path, capsys):
    with pytest.raises(RLSeverError, match="shape"):
        tiny_agent("ppo", WRONG_SHAPE_ID).collector.collect()
    with pytest.raises(ConfigError, match="Box"):
        tiny_agent("ppo", "Pendulum-v1", action_masks="on")
    with pytest.raises(ConfigError, match="tf:"):
        tiny_agent("ppo", "tf:CartPole-v1", action_masks="on")
    agent = tiny_agent("ppo", DISCRETE_ID)
    with pytest.raises(RLSeverError, match="allows no action"):
        agent.predict(np.zeros((2, 12), np.float32), action_masks=np.zeros((2, 6), bool))
    with pytest.raises(ConfigError, match="without masks"):
        tiny_agent("ppo").predict(np.zeros(4, np.float32), action_masks=np.ones(2, bool))
    code = cli.main(["train", "ppo", "CartPole-v1", "--steps", "10", "--logdir", str(tmp_path),
                     "--no-progress", "--set", "action_masks=on"])
    err = capsys.readouterr().err
    assert code == 2 and "mask" in err and "Traceback" not in err


@pytest.mark.parametrize("kind", ["discrete", "multi"])
def test_no_gradient_reaches_a_masked_logit(kind):
    """The loss and the entropy move only the allowed actions' logits: the gradient at a
    forbidden one is exactly zero, at the allowed ones it is not."""
    space = gym.spaces.Discrete(4) if kind == "discrete" else gym.spaces.MultiDiscrete([2, 3])
    head = ActionHead(action_spec(space))
    rng = np.random.default_rng(2)
    logits = tf.Variable(rng.standard_normal((16, head.param_dim)).astype(np.float32))
    mask = rng.random((16, head.param_dim)) < 0.5
    mask[:, 0] = True
    if kind == "multi":
        mask[:, 2] = True
    with tf.GradientTape(persistent=True) as tape:
        dist = head.distribution(logits, mask=tf.constant(mask))
        actions = head.sample(dist, tf.constant([3, 4]))
        terms = {"log_prob": tf.reduce_sum(dist.log_prob(actions)),
                 "entropy": tf.reduce_sum(dist.entropy())}
    for name, value in terms.items():
        grad = tape.gradient(value, logits).numpy()
        assert np.all(grad[~mask] == 0.0), name
        assert np.any(grad[mask] != 0.0), name
