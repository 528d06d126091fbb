"""The compiled act and update steps are traced once per agent: annealed learning rate and clip
range, loss weights and freeze flags live in tf.Variables and never cause a retrace, and
their new values reach the compiled update."""

from __future__ import annotations

import contextlib
import logging

import pytest

from rl_sever.onpolicy.agent import OnPolicyAgent
from tests.helpers import collect_batch, count_calls, make_agent


@pytest.mark.parametrize("algo, jit", [("ppo", False), ("a2c", False), ("ppo", True)],
                         ids=["ppo", "a2c", "ppo-xla"])
def test_no_retrace_across_iterations_while_schedules_change(algo, jit, monkeypatch):
    # The bodies count their traces: a retrace through any wrapper (a new tf.function for
    # the host policy's weights, a rebuilt update) shows, which the tf.function's own
    # tracing count of a fixed input signature cannot.
    traces = count_calls(monkeypatch, OnPolicyAgent, "_train", "_behave")
    overrides = {"lr_schedule": "linear", "total_steps": 6 * 32, "eval_episodes": 0,
                 "jit_compile": jit, "host_act": "off"}
    if algo == "ppo":
        overrides["clip_schedule"] = "linear"
    agent = make_agent(algo, "CartPole-v1", overrides)
    seen = []

    def record(agent, metrics):
        seen.append({
            "traces": dict(traces),
            "lr": float(agent.optimizer.learning_rate.numpy()),
            "clip": float(agent.clip_range.numpy()) if algo == "ppo" else None,
        })
        # Switches flipped between iterations must not retrace either.
        agent.loss_weights["entropy"].assign(0.01 * len(seen))
        agent.optimizer.set_frozen("critic", len(seen) % 2 == 1)

    try:
        agent.learn(progress=False, callback=record)
        agent.optimizer.set_frozen("critic", False)
        agent.learn(2 * 32, progress=False, callback=record)  # a second learn() call
    finally:
        agent.close()
    assert len(seen) == 8
    assert all(s["traces"] == {"_train": 1, "_behave": 1} for s in seen), seen
    # The schedules really moved: the learning rate (and clip range) differ every iteration.
    lrs = [s["lr"] for s in seen[:6]]
    assert all(a > b for a, b in zip(lrs, lrs[1:])), lrs
    if algo == "ppo":
        clips = [s["clip"] for s in seen[:6]]
        assert all(a > b for a, b in zip(clips, clips[1:])), clips


def test_a_structural_edit_retraces_and_the_counter_sees_it(monkeypatch):
    """The control of the test above: replacing a term before the first update rebuilds the
    compiled update, and the body's trace counter shows the second trace."""
    traces = count_calls(monkeypatch, OnPolicyAgent, "_train")
    agent = make_agent("ppo", "CartPole-v1", eval_episodes=0)
    batch = collect_batch(agent)
    agent.train(batch)
    assert traces["_train"] == 1
    agent2 = make_agent("ppo", "CartPole-v1", eval_episodes=0)
    agent2.objective.set_weight("entropy", 0.5)  # a weight: no retrace
    agent2.objective.remove("entropy")  # structure: a new update function
    agent2.train(batch)
    assert traces["_train"] == 2
    agent.close()
    agent2.close()


def test_the_annealed_clip_range_reaches_the_compiled_ppo_loss(monkeypatch, tmp_path):
    """The same rollout from the same parameters through the same compiled update (no
    retrace): a clip range of 100 clips nothing, one of 1e-6 clips most ratios."""
    traces = count_calls(monkeypatch, OnPolicyAgent, "_train")
    agent = make_agent("ppo", "CartPole-v1", eval_episodes=0)
    batch = collect_batch(agent)
    start = agent.checkpoint.write(str(tmp_path / "start"))
    fractions = {}
    for clip in (100.0, 1e-6):
        agent.checkpoint.read(start).assert_consumed()
        agent.clip_range.assign(clip)
        fractions[clip] = agent.train(batch)["train/clip_fraction"]
    assert fractions[100.0] == 0.0
    assert fractions[1e-6] > 0.3, fractions
    assert traces["_train"] == 1
    agent.close()


@contextlib.contextmanager
def retracing_warnings(monkeypatch):
    """TensorFlow's "frequent retracing" messages logged within, with its threshold lowered
    to 2 (two agents of a kind would show it) and earlier tests' counts dropped."""
    import tensorflow as tf
    from tensorflow.python.eager.polymorphic_function import polymorphic_function as pf

    monkeypatch.setattr(pf, "FREQUENT_TRACING_WARNING_THRESHOLD", 2)
    monkeypatch.setattr(pf, "_frequent_tracing_detector_manager",
                        pf._FrequentTracingDetectorManager())
    seen = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    tf.get_logger().addHandler(handler)
    try:
        yield seen
    finally:
        tf.get_logger().removeHandler(handler)


def test_agents_built_one_after_another_in_one_process_do_not_warn_of_retracing(monkeypatch):
    """Seeds in a loop, a tune worker's trials, an evaluation env per evaluation: each agent
    traces its own compiled steps once. TensorFlow counts traces per Python code object and
    warns of "frequent retracing" when most of a function's recent calls traced."""
    with retracing_warnings(monkeypatch) as seen:
        for algo, env_id, steps in [("ppo", "CartPole-v1", 64), ("ppo", "tf:CartPole-v1", 64),
                                    ("sac", "Pendulum-v1", 96)]:
            for seed in range(2):
                agent = make_agent(algo, env_id, {"seed": seed, "eval_episodes": 1})
                agent.learn(steps, progress=False)
                agent.close()
    assert not [m for m in seen if "retracing" in m], seen


def test_exports_one_after_another_do_not_warn_of_retracing(monkeypatch, tmp_path):
    """Exporting several agents in one process (every preset's policy, a sweep's best trials):
    the check's distribution function is made once per check and traced once; before it
    opted out, the second export warned of retracing."""
    from rl_sever.deploy import export

    with retracing_warnings(monkeypatch) as seen:
        for seed in range(2):
            agent = make_agent("sac", "Pendulum-v1", {"seed": seed, "eval_episodes": 0,
                                                      "network.matmul_precision": "bfloat16"})
            export(agent, tmp_path / f"policy{seed}", ["savedmodel", "onnx"], check=8,
                   stochastic=True, latency=False)
            agent.close()
    assert not [m for m in seen if "retracing" in m], seen
