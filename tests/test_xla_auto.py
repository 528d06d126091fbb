"""`jit_compile: auto` (rl_sever.onpolicy.xla): which runs compile their updates with XLA, that
the chosen update is the one that runs, and that a non-finite step changes nothing under XLA
(where check_numerics is compiled away)."""

import numpy as np
import pytest
import tensorflow as tf

from rl_sever.config import presets
from rl_sever.core.optim import ModuleOptimizer
from rl_sever.errors import ConfigError
from rl_sever.objective import LossTerm
from rl_sever.onpolicy import xla
from tests.helpers import make_agent


def preset_agent(algo, env_id, **overrides):
    from rl_sever.core.registry import get_agent_class

    klass = get_agent_class(algo)
    cfg = presets.resolve(klass.config_cls, [presets.find(algo, env_id) or {}, overrides])
    return klass(env_id, cfg)


def test_gradient_steps_of_the_presets():
    ppo = preset_agent("ppo", "CartPole-v1")  # 8 x 32 steps, 20 epochs of one minibatch
    a2c = preset_agent("a2c", "CartPole-v1")  # 8 x 5 steps, one step per update
    try:
        assert xla.gradient_steps(ppo, 100_000) == 391 * 20
        assert xla.gradient_steps(a2c, 100_000) == 2_500
        assert xla.gradient_steps(ppo, 0) == 0
    finally:
        ppo.close()
        a2c.close()


def test_auto_compiles_long_runs_of_small_updates_only():
    ppo = preset_agent("ppo", "CartPole-v1")
    try:
        assert ppo.config.jit_compile == "auto"
        assert xla.auto_xla(ppo, 100_000)  # 7,820 gradient steps
        assert not xla.auto_xla(ppo, 50_000)  # 3,920: the compile would not pay
        ppo.plan_updates(100_000)
        assert ppo.uses_xla()
        ppo.plan_updates(10_000)  # each learn() call decides again
        assert not ppo.uses_xla()
    finally:
        ppo.close()
    a2c = preset_agent("a2c", "CartPole-v1")
    big = preset_agent("ppo", "CartPole-v1", batch_size=2048, n_steps=256)  # oneDNN's size
    try:
        assert not xla.auto_xla(a2c, 100_000)
        assert xla.auto_xla(a2c, 1_000_000)
        assert xla.gradient_steps(big, 1_000_000) > xla.AUTO_MIN_GRADIENT_STEPS
        assert not xla.auto_xla(big, 1_000_000)
    finally:
        a2c.close()
        big.close()


@pytest.mark.parametrize("overrides, reason", [
    ({"network.recurrent": "lstm"}, "recurrent"),
    ({"losses": ["value=examples.custom_losses:huber_value"]}, "a user's term"),
])
def test_auto_keeps_plain_updates_where_xla_is_not_measured_or_may_fail(overrides, reason):
    agent = make_agent("ppo", "CartPole-v1", {"jit_compile": "auto", **overrides})
    try:
        assert xla.gradient_steps(agent, 10_000_000) > xla.AUTO_MIN_GRADIENT_STEPS
        assert not xla.auto_xla(agent, 10_000_000), reason
    finally:
        agent.close()


def test_a_user_loss_term_object_keeps_plain_updates():
    from agents import PPO

    term = LossTerm("extra", lambda b, o: 0.0 * tf.reduce_mean(o["values"]), 1.0,
                    trains={"critic"})
    plain = make_agent("ppo")
    config = plain.config
    plain.close()
    agent = PPO("CartPole-v1", config, losses=[term])
    try:
        assert not xla.auto_xla(agent, 10_000_000)
    finally:
        agent.close()


def test_a_user_algorithm_class_keeps_plain_updates():
    from agents import PPO

    class MyPPO(PPO):  # a user's algorithm may override compiled parts with any op
        pass

    plain = make_agent("ppo")
    config = plain.config
    plain.close()
    agent = MyPPO("CartPole-v1", config)
    try:
        assert xla.gradient_steps(agent, 10_000_000) > xla.AUTO_MIN_GRADIENT_STEPS
        assert not xla.auto_xla(agent, 10_000_000)
    finally:
        agent.close()


def test_the_choice_is_made_on_the_runs_whole_budget(monkeypatch):
    """A resumed run, or one grown by several learn() calls, chooses as one run of its whole
    budget would: the second call of 64 steps (a 128-step run) is compiled, the first not."""
    monkeypatch.setattr(xla, "AUTO_MIN_GRADIENT_STEPS", 16)  # tiny PPO: 2 epochs x 2 x 2 per 32
    agent = make_agent("ppo", "CartPole-v1", {"jit_compile": "auto"})
    try:
        assert xla.gradient_steps(agent, 64) == 8 and xla.gradient_steps(agent, 128) == 16
        agent.learn(64, progress=False)
        assert not agent.uses_xla()
        agent.learn(64, progress=False)
        assert agent.uses_xla()
        assert agent.train_fn_for(True).experimental_get_tracing_count() == 1
    finally:
        agent.close()


def test_explicit_values_win_and_bad_ones_fail_in_one_line():
    agent = make_agent("ppo", "CartPole-v1", {"jit_compile": False})
    try:
        agent.plan_updates(10_000_000)
        assert not agent.uses_xla()
    finally:
        agent.close()
    with pytest.raises(ConfigError, match="jit_compile must be true, false or auto"):
        make_agent("ppo", "CartPole-v1", {"jit_compile": "sometimes"})


def test_a_run_auto_chooses_xla_for_runs_the_xla_update(monkeypatch, tmp_path):
    monkeypatch.setattr(xla, "AUTO_MIN_GRADIENT_STEPS", 8)  # a short run counts as long
    runs = []
    for _ in range(2):
        agent = make_agent("ppo", "CartPole-v1", {"jit_compile": "auto", "total_steps": 96},
                           logdir=tmp_path)
        try:
            agent.learn(progress=False)
            assert agent.uses_xla()
            assert agent.train_fn_for(True).experimental_get_tracing_count() == 1
            assert agent.train_fn.experimental_get_tracing_count() == 0  # the plain one: never
            runs.append([v.numpy() for v in agent.optimizer.all_variables])
        finally:
            agent.close()
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)  # deterministic given the seed
    monkeypatch.setattr(xla, "AUTO_MIN_GRADIENT_STEPS", 10**9)
    agent = make_agent("ppo", "CartPole-v1", {"jit_compile": "auto", "total_steps": 96})
    try:
        agent.learn(progress=False)
        assert not agent.uses_xla()
        assert agent.train_fn.experimental_get_tracing_count() == 1
        plain = [v.numpy() for v in agent.optimizer.all_variables]
    finally:
        agent.close()
    # Another shuffle and XLA's fusion: the same run, not the same bits.
    assert any(not np.array_equal(a, b) for a, b in zip(plain, runs[0]))


def test_an_ingraph_run_auto_chooses_xla_for_fuses_its_iteration_under_xla(monkeypatch):
    monkeypatch.setattr(xla, "AUTO_MIN_GRADIENT_STEPS", 3)  # A2C: one step per iteration
    agent = make_agent("a2c", "tf:CartPole-v1",
                       {"jit_compile": "auto", "audit": False, "total_steps": 3 * 32,
                        "eval_episodes": 0})
    try:
        agent.learn(progress=False)
        assert agent.uses_xla()
        assert set(agent.ingraph._iterations) == {True}
        assert agent.ingraph.iteration_fn.experimental_get_tracing_count() == 1
    finally:
        agent.close()


@pytest.mark.parametrize("jit", [False, True])
def test_a_non_finite_gradient_changes_nothing_with_or_without_xla(jit):
    w = tf.Variable([1.0, 2.0])
    opt = ModuleOptimizer({"m": [w]}, learning_rate=0.1, fused=not jit, max_grad_norm=0.5)
    slots = lambda: [v.numpy().copy() for v in opt.optimizers["m"].variables]  # noqa: E731

    @tf.function(jit_compile=jit)
    def step(g):
        return opt.apply([g])

    before, slots_before = w.numpy().copy(), slots()
    if jit:  # check_numerics is compiled away: the step is skipped instead
        assert np.isnan(step(tf.constant([np.nan, 1.0])).numpy())
    else:
        with pytest.raises(tf.errors.InvalidArgumentError, match="gradient norm"):
            step(tf.constant([np.nan, 1.0]))
    np.testing.assert_array_equal(w.numpy(), before)
    for a, b in zip(slots(), slots_before):
        np.testing.assert_array_equal(a, b)
    step(tf.constant([1.0, -1.0]))
    assert np.all(w.numpy() != before)


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "Masked/InvalidActionPenaltyMulti-v0"])
def test_auto_compiles_gaussian_and_masked_multidiscrete_policies(env_id, monkeypatch):
    """auto turns XLA on for every shipped MLP policy: a diagonal Gaussian and a masked
    MultiDiscrete one compile and train (CartPole's categorical runs in the tests above)."""
    monkeypatch.setattr(xla, "AUTO_MIN_GRADIENT_STEPS", 8)
    agent = make_agent("ppo", env_id, {"jit_compile": "auto", "total_steps": 64,
                                       "eval_episodes": 0})
    try:
        before = [v.numpy() for v in agent.optimizer.all_variables]
        agent.learn(progress=False)
        assert agent.uses_xla()
        assert agent.train_fn_for(True).experimental_get_tracing_count() == 1
        after = [v.numpy() for v in agent.optimizer.all_variables]
        assert all(np.isfinite(a).all() for a in after)
        assert any(not np.array_equal(a, b) for a, b in zip(after, before))
    finally:
        agent.close()


def _host_op_under_xla(monkeypatch):
    """Every gradient step traced for XLA gets an op XLA has no kernel for."""
    from rl_sever.onpolicy.agent import OnPolicyAgent

    step = OnPolicyAgent._gradient_step

    def with_host_op(self, mb):
        out = step(self, mb)
        if self._xla_tracing:
            key = next(iter(out))
            kept = tf.py_function(lambda x: x, [out[key]], out[key].dtype)
            kept.set_shape(out[key].shape)
            out = {**out, key: kept}
        return out

    monkeypatch.setattr(OnPolicyAgent, "_gradient_step", with_host_op)


@pytest.mark.parametrize("algo,env_id,steps", [("ppo", "CartPole-v1", 8),
                                               ("a2c", "tf:CartPole-v1", 3)])
def test_auto_runs_the_plain_update_where_xla_cannot_compile(algo, env_id, steps, monkeypatch):
    _host_op_under_xla(monkeypatch)
    overrides = {"jit_compile": "auto", "total_steps": 96, "eval_episodes": 0}
    runs = []
    for threshold in (steps, 10**9):  # auto chooses XLA (and falls back); auto stays plain
        monkeypatch.setattr(xla, "AUTO_MIN_GRADIENT_STEPS", threshold)
        agent = make_agent(algo, env_id, overrides)
        try:
            if threshold == steps:
                with pytest.warns(xla.XlaFallbackWarning, match="XLA could not compile"):
                    agent.learn(progress=False)
                assert agent._xla_failed and not agent.uses_xla()
                agent.plan_updates(10**6)  # a later learn() call does not try again
                assert not agent.uses_xla()
            else:
                agent.learn(progress=False)
            runs.append([v.numpy() for v in agent.optimizer.all_variables])
        finally:
            agent.close()
    for a, b in zip(*runs):  # the failed call changed nothing: the plain run's bits
        np.testing.assert_array_equal(a, b)


def test_explicit_xla_keeps_its_compile_error(monkeypatch):
    _host_op_under_xla(monkeypatch)
    agent = make_agent("ppo", "CartPole-v1", {"jit_compile": True, "total_steps": 96,
                                              "eval_episodes": 0})
    try:
        with pytest.raises(tf.errors.InvalidArgumentError, match="XLA"):
            agent.learn(progress=False)
    finally:
        agent.close()
