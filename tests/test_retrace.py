"""The compiled act and update steps are traced once per agent: annealed learning rate and clip
range, loss weights and freeze flags live in tf.Variables and never cause a retrace."""

from __future__ import annotations

import pytest

from tests.helpers import make_agent


@pytest.mark.parametrize("algo, jit", [("ppo", False), ("a2c", False), ("ppo", True)],
                         ids=["ppo", "a2c", "ppo-xla"])
def test_no_retrace_across_iterations_while_schedules_change(algo, jit):
    overrides = {"lr_schedule": "linear", "total_steps": 6 * 32, "eval_episodes": 0,
                 "jit_compile": jit}
    if algo == "ppo":
        overrides["clip_schedule"] = "linear"
    agent = make_agent(algo, "CartPole-v1", overrides)
    seen = []

    def record(agent, metrics):
        seen.append({
            "train": agent.train_fn.experimental_get_tracing_count(),
            "act": agent.act_fn.experimental_get_tracing_count(),
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
    assert all(s["train"] == 1 and s["act"] == 1 for s in seen), seen
    # The schedules really moved: the learning rate (and clip range) differ every iteration.
    lrs = [s["lr"] for s in seen[:6]]
    assert all(a > b for a, b in zip(lrs, lrs[1:])), lrs
    if algo == "ppo":
        clips = [s["clip"] for s in seen[:6]]
        assert all(a > b for a, b in zip(clips, clips[1:])), clips
    assert agent.train_fn.experimental_get_tracing_count() == 1
    assert agent.act_fn.experimental_get_tracing_count() == 1
