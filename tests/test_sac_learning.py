"""SAC learns Pendulum-v1 (slow: about 10k env steps with full-size networks)."""

from __future__ import annotations

import pytest

from rl_sever.core.evaluation import evaluate
from rl_sever.core.registry import get_agent_class

BUDGET = 10_000


@pytest.mark.slow
def test_sac_reaches_minus_250_on_pendulum_within_budget():
    sac = get_agent_class("sac")
    cfg = sac.config_cls(seed=0, total_steps=BUDGET, learning_rate=1e-3, eval_episodes=0)
    agent = sac("Pendulum-v1", cfg, logdir=None)
    agent.learn(BUDGET, progress=False)
    result = evaluate(agent, 10, seed=10_000)
    assert result["mean_reward"] >= -250, result
