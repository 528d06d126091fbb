"""The trainer checks each agent's flow contract at the first update and stops on a leak."""

import numpy as np
import pytest
import tensorflow as tf

from agents import A2C, PPO, A2CConfig, PPOConfig
from rl_sever.errors import FlowContractError
from rl_sever.objective import LossTerm, actor_modules


class LeakyPPO(PPO):
    """A deliberately wrong policy loss: the critic's baseline is not severed."""

    def policy_term(self) -> LossTerm:
        def leaky(mb, out):
            advantages = mb["returns"] - out["values"]  # BUG (on purpose): no sever on the baseline
            return -tf.reduce_mean(advantages * out["logp"])

        return LossTerm("policy", leaky, trains=actor_modules)


def _cfg(cls, **kw):
    return cls(n_envs=2, n_steps=16, eval_episodes=0, **kw)


def test_leak_stops_training_before_any_update(tmp_path):
    agent = LeakyPPO("CartPole-v1", _cfg(PPOConfig, batch_size=32, n_epochs=1), logdir=tmp_path)
    critic_before = [v.numpy().copy() for v in agent.model.modules()["critic"]]
    with pytest.raises(FlowContractError) as info:
        agent.learn(32, progress=False)
    message = str(info.value)
    assert "policy" in message and "critic" in message and "leak" in message
    assert "vf/dense" in message  # names the leaking variables (the value network's)
    # fail fast: nothing was updated, and the run folder (with its config) survives
    for before, v in zip(critic_before, agent.model.modules()["critic"]):
        np.testing.assert_array_equal(before, v.numpy())
    assert (agent.run_dir / "config.json").is_file()


def test_leak_passes_when_audit_disabled():
    agent = LeakyPPO("CartPole-v1", _cfg(PPOConfig, batch_size=32, n_epochs=1, audit=False), logdir=None)
    agent.learn(32, progress=False)  # the user opted out: trains, leak and all
    assert int(agent.global_step.numpy()) == 32


@pytest.mark.parametrize("cls,cfg_cls,env_id", [(PPO, PPOConfig, "Pendulum-v1"), (A2C, A2CConfig, "CartPole-v1")])
def test_shipped_agents_pass_their_contract(cls, cfg_cls, env_id):
    from rl_sever.audit import run_audit
    from rl_sever.onpolicy.collector import OnPolicyCollector

    extra = {"batch_size": 32} if cfg_cls is PPOConfig else {}
    agent = cls(env_id, _cfg(cfg_cls, **extra), logdir=None)
    batch = OnPolicyCollector(agent).collect().batch
    matrix, violations = run_audit(agent, batch, enforce=True)
    assert violations == []
    assert matrix.status("policy", "critic") in ("none", "zero")
    assert matrix.status("value", "actor") in ("none", "zero")
    assert matrix.status("policy", "actor") == "flow" and matrix.status("value", "critic") == "flow"


def test_no_module_calls_stop_gradient_directly():
    """Every sever goes through rl_sever.isolation: no page, learner or loss module of the
    library calls tf.stop_gradient itself (only the isolation helpers do)."""
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[1]
    files = [*root.glob("rl_sever/**/*.py"), *root.glob("agents/*.py")]
    assert len(files) > 50 and root / "agents" / "sac.py" in files
    calls = [str(f.relative_to(root)) for f in files
             if "stop_gradient" in f.read_text() and "isolation" not in f.parts]
    assert calls == []
