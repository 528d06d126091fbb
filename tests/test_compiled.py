"""rl_sever.core.compiled: the fast call path gives what tf.function gives, and user loss terms keep
AutoGraph although the update steps are traced without it."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import tensorflow as tf

from agents import SAC
from rl_sever.core.compiled import FastCall, plain_graph
from rl_sever.core.registry import get_agent_class
from rl_sever.objective import LossTerm
from tests.helpers import collect_batch, tiny_agent, tiny_config


def agent_with(algo: str, term: LossTerm):
    return get_agent_class(algo)("CartPole-v1", tiny_config(algo), logdir=None, losses=[term])


@pytest.fixture()
def step():
    v = tf.Variable([1.0, 2.0, 3.0])
    counter = tf.Variable(0)

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32), tf.TensorSpec([], tf.int32)])
    def fn(x, k):
        counter.assign_add(k)
        return {"y": x * v, "n": counter.read_value()}

    return fn, v, counter


def test_fast_path_matches_the_tf_function_call_and_updates_state(step):
    fn, v, counter = step
    fast = FastCall(fn)
    assert fast.fast
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    out = fast(x, 2)
    np.testing.assert_array_equal(out["y"].numpy(), fn(x, tf.constant(0))["y"].numpy())
    assert int(out["n"]) == 2 and int(counter.numpy()) == 2
    v.assign([0.0, 0.0, 1.0])  # captured by handle: a new value is seen without retracing
    np.testing.assert_array_equal(fast(x, 0)["y"].numpy(), [[0, 0, 2], [0, 0, 5]])
    assert fn.experimental_get_tracing_count() == 1


def test_converts_inputs_to_the_signature_dtypes_and_checks_the_count(step):
    fast = FastCall(step[0])
    out = fast([[1, 1, 1]], np.int64(1))  # ints and lists are converted, as tf.function would
    np.testing.assert_array_equal(out["y"].numpy(), [[1.0, 2.0, 3.0]])
    with pytest.raises(TypeError, match="expected 2 arguments, got 1"):
        fast(np.zeros((1, 3), np.float32))


def test_converted_arrays_are_copies_on_the_device_tf_constant_uses():
    """Without a GPU the converted input skips TensorFlow's copy to the default device: it must
    still land where tf.constant puts it (inside a device scope too), hold the same values and
    not share the caller's buffer."""
    for scope in ("/device:CPU:0", None):  # the unscoped path (the new one) last
        x = np.arange(160, dtype=np.float32).reshape(5, 8, 4)
        with tf.device(scope) if scope else contextlib.nullcontext():
            got, want = FastCall._tensor(x, tf.float32), tf.constant(x)
        assert got.device == want.device and got.dtype == want.dtype
        np.testing.assert_array_equal(got.numpy(), x)
        x[0, 0, 0] = -1.0
        assert got.numpy()[0, 0, 0] == 0.0


def test_under_a_gradient_tape_it_takes_the_public_path():
    w = tf.Variable(3.0)
    fast = FastCall(tf.function(lambda x: x * w, input_signature=[tf.TensorSpec([], tf.float32)]))
    with tf.GradientTape() as tape:
        y = fast(2.0)
    assert float(tape.gradient(y, w)) == 2.0  # the fast path would have hidden the op from the tape


def test_plain_graph_skips_autograph():
    def branchy(x):
        if x > 0:  # Python `if` on a tensor: only AutoGraph can trace this
            return x
        return -x

    with pytest.raises(TypeError):
        tf.function(lambda x: plain_graph(branchy)(x))(tf.constant(1.0))
    assert float(tf.function(branchy)(tf.constant(-2.0))) == 2.0


class SignAwareTerm(LossTerm):
    """A user's term with a Python `if` on a tensor (AutoGraph turns it into tf.cond)."""

    def compute(self, batch, out):
        value = tf.reduce_mean(out["values"])
        if tf.reduce_mean(batch["advantages"]) > 0:
            return value
        return 2.0 * value


def test_user_loss_terms_keep_autograph_inside_the_plain_update():
    agent = agent_with("ppo", SignAwareTerm("sign_aware", weight=0.0, trains={"critic"}))
    agent.learn(64, progress=False)
    assert agent.train_fn.experimental_get_tracing_count() == 1
    agent.close()


def test_fn_terms_written_as_plain_functions_keep_autograph_too():
    def halved(batch, out):
        x = tf.constant(4.0) + 0.0 * tf.reduce_mean(out["values"])
        for _ in tf.range(2):  # a tensor loop: only AutoGraph turns it into tf.while_loop
            x = x * 0.5
        return x

    agent = get_agent_class("a2c")("CartPole-v1", tiny_config("a2c", audit=False), logdir=None,
                                   losses=[LossTerm("halved", fn=halved, weight=0.0,
                                                    trains={"critic"})])
    metrics = agent.train(collect_batch(agent))
    assert metrics["loss/halved"] == 1.0  # 4 halved twice: the loop ran inside the graph
    assert agent.train_fn.experimental_get_tracing_count() == 1
    agent.close()


_SAC_ACT_UNIT = SAC._act_unit


def _branchy_act_unit(self, obs, seed):
    actions = _SAC_ACT_UNIT(self, obs, seed)
    if tf.reduce_sum(actions) > 1e9:  # Python `if` on a tensor: only AutoGraph can trace this
        actions = actions * 0.0
    return actions


class BranchySAC(SAC):
    """A user's off-policy algorithm (outside the packages) written with a Python `if`."""

    _act_unit = _branchy_act_unit


def test_shipped_off_policy_steps_skip_autograph_and_a_users_class_keeps_it(monkeypatch):
    obs = np.zeros((1, 3), np.float32)  # Pendulum
    user = BranchySAC("Pendulum-v1", tiny_config("sac"), logdir=None)
    assert user.compiled["act"](obs).shape == (1, 1)
    monkeypatch.setattr(SAC, "_act_unit", _branchy_act_unit)
    shipped = SAC("Pendulum-v1", tiny_config("sac"), logdir=None)
    with pytest.raises(TypeError, match="tf.Tensor.*Python `bool`|not allowed"):
        shipped.compiled["act"](obs)


@pytest.mark.parametrize("algo", ["sac", "ppo"])
def test_predict_runs_its_act_steps_without_tf_function_dispatch(algo, monkeypatch):
    agent = tiny_agent(algo, fill=0)
    obs = np.random.default_rng(0).standard_normal((5, agent.layout.obs_spec().shape[-1]))
    obs = obs.astype(np.float32)
    want = agent.env_actions(agent.greedy_fn(obs).numpy())
    stochastic = agent.predict(obs, deterministic=False)  # its seed counter moves: not compared
    original = agent.greedy_fn

    def no_dispatch(self, *args, **kwargs):
        raise AssertionError("tf.function's per-call dispatch ran")

    with monkeypatch.context() as m:
        m.setattr(type(original), "__call__", no_dispatch)
        np.testing.assert_array_equal(agent.predict(obs), want)  # the same graph, bit for bit
        assert agent.predict(obs, deterministic=False).shape == stochastic.shape
    assert all(agent._fast_calls[name][1].fast for name in ("greedy_fn", "act_fn"))
    # An export swaps greedy_fn for a while (rl_sever.deploy.graph): predict calls the new one.
    agent.greedy_fn = tf.function(lambda o: tf.zeros_like(original(o)),
                                  input_signature=original.input_signature)
    np.testing.assert_array_equal(agent.predict(obs), agent.env_actions(np.zeros_like(want)))
    agent.greedy_fn = original
    np.testing.assert_array_equal(agent.predict(obs), want)
    agent.close()


def test_predict_runs_the_python_of_its_steps_when_functions_run_eagerly():
    agent = tiny_agent("ppo", fill=0)
    obs = np.zeros((2, agent.layout.obs_spec().shape[-1]), np.float32)
    calls = []
    python = agent.greedy_fn.python_function
    agent.greedy_fn = tf.function(lambda o: calls.append(1) or python(o),
                                  input_signature=agent.greedy_fn.input_signature)
    want = agent.predict(obs)
    traced = len(calls)
    tf.config.run_functions_eagerly(True)
    try:
        np.testing.assert_array_equal(agent.predict(obs), want)
        assert len(calls) == traced + 1  # the Python body ran, as a debugger expects
    finally:
        tf.config.run_functions_eagerly(False)
    agent.close()
