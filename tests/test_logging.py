"""TensorBoard output of a short run: Stable-Baselines3 scalar names, env steps on the x-axis,
the config table and the gradient-flow audit as text. TF2 summaries are stored as tensors."""

from __future__ import annotations

import math
import os

import pytest

from tests.helpers import make_agent, read_event_tensors

SB3_TAGS = [
    "rollout/ep_rew_mean", "rollout/ep_len_mean", "time/fps", "train/loss",
    "train/policy_gradient_loss", "train/value_loss", "train/entropy_loss",
    "train/explained_variance", "train/learning_rate", "eval/mean_reward", "eval/mean_ep_length",
]
PPO_TAGS = ["train/approx_kl", "train/clip_fraction"]


def scalar(value) -> float:
    return float(value)


def text(value) -> str:
    return value.item().decode()


@pytest.mark.parametrize("algo,env_id", [("ppo", "Pendulum-v1"), ("a2c", "CartPole-v1")])
def test_event_files_hold_sb3_scalars_config_and_audit(algo, env_id, tmp_path):
    # Pendulum episodes last 200 steps: 2 iterations of 2 x 100 steps finish two of them.
    overrides = {"n_steps": 100, "total_steps": 400, "batch_size": 50} if env_id == "Pendulum-v1" else {}
    agent = make_agent(algo, env_id, overrides, logdir=tmp_path)
    try:
        agent.learn(progress=False)
    finally:
        agent.close()
    rollout = agent.config.n_steps * agent.config.n_envs
    total = agent.config.total_steps

    # Raw records in writing order (EventAccumulator would drop steps that go backwards).
    events = read_event_tensors(agent.run_dir)
    tags = set(events)
    expected = SB3_TAGS + (PPO_TAGS if algo == "ppo" else [])
    if agent.action.kind == "box":
        expected.append("train/std")
    missing = sorted(set(expected) - tags)
    assert not missing, f"missing {missing}; logged {sorted(tags)}"
    if algo == "a2c":
        assert not {"train/approx_kl", "train/clip_fraction", "train/std"} & tags

    scalar_tags = [t for t in tags if t not in ("config", "audit/gradient_flow")
                   and not t.startswith("_hparams_")]
    for tag in scalar_tags:
        steps = [s for s, _ in events[tag]]
        # x-axis = environment steps: multiples of the rollout size, within the run, strictly
        # increasing in the order written (no step twice, none going back).
        assert all(s % rollout == 0 and 0 < s <= total for s in steps), (tag, steps)
        assert all(a < b for a, b in zip(steps, steps[1:])), (tag, steps)
        assert all(math.isfinite(scalar(v)) for _, v in events[tag]), tag
    assert [s for s, _ in events["eval/mean_reward"]][-1] == total
    assert [s for s, _ in events["train/loss"]][-1] == total
    if algo == "ppo":  # logged every iteration
        assert [s for s, _ in events["train/loss"]] == list(range(rollout, total + 1, rollout))
        lr = scalar(events["train/learning_rate"][0][1])
        assert lr == pytest.approx(agent.config.learning_rate)

    # The resolved config as a markdown table, written once at the start.
    config = events["config"]
    assert len(config) == 1 and config[0][0] == 0
    table = text(config[0][1])
    assert "| key | value |" in table
    assert f"| env_id | {env_id} |" in table
    assert "| network.hidden_sizes | [16] |" in table

    # The gradient-flow matrix with its verdict, from the audit on the first update.
    audit = events["audit/gradient_flow"]
    assert len(audit) == 1 and audit[0][0] == rollout
    report = text(audit[0][1])
    assert "verdict: OK" in report
    for name in ("policy", "value", "entropy", "actor", "critic"):
        assert name in report


def test_a_new_writer_sorts_after_the_folders_event_files(tmp_path):
    """A resumed run's event file opened in the second of the last one (names: second, host,
    pid) would sort by pid; the logger waits for the next second instead."""
    import time

    from rl_sever.core.logger import Logger

    now = int(time.time())
    (tmp_path / f"events.out.tfevents.{now}.host.99999999.0.v2").write_bytes(b"")
    logger = Logger(tmp_path)
    logger.record("x", 1.0)
    logger.dump(1)
    names = sorted(p.name for p in tmp_path.glob("events.out.tfevents.*"))
    assert len(names) == 2 and int(names[-1].split(".")[3]) > now
    assert f".{os.getpid()}." in names[-1]


def test_a_later_learn_call_of_the_same_process_does_not_wait(tmp_path):
    """This process's own files sort by their counter: a second writer in the same second
    opens at once, in that second."""
    import time

    from rl_sever.core.logger import Logger

    for _ in range(3):  # the second starts at most once within the three openings
        first = Logger(tmp_path)
        start = int(time.time())
        second = Logger(tmp_path)
        if int(time.time()) == start:
            break
    names = sorted(p.name for p in tmp_path.glob("events.out.tfevents.*"))
    assert len({n.split(".")[3] for n in names[-2:]}) == 1, names
    first.writer.close()
    second.writer.close()
