"""`rl-sever report`: the table, JSON and pictures over run folders made by hand (evaluations
known), normalisation, the fallback to TensorBoard's eval scalars, and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from rl_sever import cli
from rl_sever.core import stats
from rl_sever.core.evaluations import EVALUATIONS_FILE
from rl_sever.core.rundir import new_run_dir, write_config
from rl_sever.experiments.references import RANDOM, ZOO, atari_game, reference
from rl_sever.experiments.report import build_report, to_markdown


def fake_run(root, algo, env_id, seed, returns, every=1000):
    run = new_run_dir(root, env_id, algo, seed)
    write_config(run, {"algo": algo, "env_id": env_id, "config": {"seed": seed}})
    records = [{"step": every * (i + 1), "mean_reward": r, "std_reward": 0.0,
                "mean_ep_length": 1.0, "episodes": 5} for i, r in enumerate(returns)]
    (run / EVALUATIONS_FILE).write_text(json.dumps(records))
    return run


@pytest.fixture()
def group(tmp_path):
    root = tmp_path / "runs"
    cartpole = [[100, 300, 500], [50, 400, 450], [20, 480, 200], [10, 20, 30], [200, 500, 500]]
    for seed, returns in enumerate(cartpole):
        fake_run(root, "ppo", "CartPole-v1", seed, returns)
    for seed, returns in enumerate([[-900, -200], [-1000, -160], [-800, -150]]):
        fake_run(root, "sac", "Pendulum-v1", seed, returns)
    for seed, returns in enumerate([[-500, -90], [-400, -80], [-300, -100]]):
        fake_run(root, "ppo", "Acrobot-v1", seed, returns)
    return root


def test_report_table_json_and_pictures(group, tmp_path, capsys):
    out = tmp_path / "report"
    assert cli.main(["report", str(group), "--out", str(out), "--normalize", "zoo"]) == 0
    printed = capsys.readouterr().out
    data = json.loads((out / "report.json").read_text())
    assert [c["case"] for c in data["cases"]] == ["ppo Acrobot-v1", "ppo CartPole-v1",
                                                   "sac Pendulum-v1"]
    acrobot, ppo, sac = data["cases"]
    finals = [r["final"] for r in ppo["runs"]]
    assert sorted(finals) == [30, 200, 450, 500, 500]
    # IQM of 5: one cut from each end -> mean of 200, 450, 500
    assert ppo["final"]["iqm"]["value"] == pytest.approx((200 + 450 + 500) / 3)
    assert ppo["best"]["median"]["value"] == 480
    low, high = ppo["final"]["iqm"]["ci"]
    assert (low, high) == tuple(stats.interval([finals], "iqm", seed=2)[1:])
    random, zoo = RANDOM["CartPole-v1"], ZOO["CartPole-v1"][0]
    assert ppo["normalized_final"]["mean"]["value"] == pytest.approx(
        (np.mean(finals) - random) / (zoo - random))
    # the aggregate pools the cases of one algorithm only: PPO's two, not SAC's
    assert list(data["aggregate"]) == ["ppo"] and data["aggregate"]["ppo"]["final"]["runs"] == 8
    row = next(line for line in printed.splitlines() if line.startswith("| ppo CartPole-v1"))
    assert f"| 5 | {ppo['final']['iqm']['value']:.1f} [{low:.1f}, {high:.1f}]" in row
    assert "**ppo: 2 cases**" in printed
    for name in ("curves.png", "profile.png"):
        assert (out / name).stat().st_size > 5000
    assert (out / "report.md").read_text() == to_markdown(build_report([group],
                                                                      normalize="zoo"))


def test_report_reads_tensorboard_eval_scalars_and_groups_by_folder(tmp_path):
    for name in ("preset", "tuned"):
        for seed in range(2):
            run = fake_run(tmp_path / name, "ppo", "Acrobot-v1", seed, [-100.0 - seed])
            if name == "tuned":  # a run from before evaluations.json: its event file
                (run / EVALUATIONS_FILE).unlink()
                writer = tf.summary.create_file_writer(str(run))
                with writer.as_default():
                    tf.summary.scalar("eval/mean_reward", -80.0 + seed, step=5000)
                writer.close()
    report = build_report([tmp_path / "preset", tmp_path / "tuned"], by="folder")
    cases = {c["case"]: [r["final"] for r in c["runs"]] for c in report["cases"]}
    assert cases == {"preset: ppo Acrobot-v1": [-100.0, -101.0],
                     "tuned: ppo Acrobot-v1": [-80.0, -79.0]}


def test_references_and_bad_input(group, tmp_path, capsys):
    assert atari_game("ALE/Breakout-v5") == atari_game("BreakoutNoFrameskip-v4") == "Breakout"
    assert reference("PongNoFrameskip-v4", "human") == (-20.7, 14.6)
    assert reference("CartPole-v1", "human") is None
    assert cli.main(["report", str(group), "--normalize", "human", "--out",
                     str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "no human reference score for Acrobot-v1, CartPole-v1, Pendulum-v1" in err
    assert cli.main(["report", str(tmp_path / "nothing")]) == 2
    assert "not a folder" in capsys.readouterr().err
    empty = new_run_dir(tmp_path / "e", "CartPole-v1", "ppo", 0)
    write_config(empty, {"algo": "ppo", "env_id": "CartPole-v1", "config": {}})
    assert cli.main(["report", str(empty)]) == 2
    err = capsys.readouterr().err
    assert "none of the runs has evaluations" in err and err.count("\n") == 1
