"""`rl-sever plot`: learning curves read from run folders' event files, drawn as a PNG."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import tensorflow as tf

from rl_sever import cli
from rl_sever.core.curves import load_curve, plot_curves, plot_panels, read_scalars, smooth
from rl_sever.core.rundir import new_run_dir, write_config
from rl_sever.errors import ConfigError

TAG = "rollout/ep_rew_mean"


def fake_run(logdir: Path, algo: str, env_id: str, seed: int, points: dict[int, float],
             extra: dict[int, float] | None = None) -> Path:
    """A run folder as training leaves it: config.json and scalar summaries (two event files
    when `extra` is given, as a resumed run has)."""
    run_dir = new_run_dir(logdir, env_id, algo, seed)
    write_config(run_dir, {"algo": algo, "env_id": env_id, "config": {"seed": seed}})
    for series in (points, extra or {}):
        if not series:
            continue
        writer = tf.summary.create_file_writer(str(run_dir))
        with writer.as_default():
            for step, value in series.items():
                tf.summary.scalar(TAG, value, step=step)
                tf.summary.scalar("train/loss", -value, step=step)
        writer.close()
    return run_dir


@pytest.fixture()
def runs(tmp_path) -> list[Path]:
    steps = [0, 1000, 2000, 3000, 4000]
    return [
        fake_run(tmp_path, "ppo", "CartPole-v1", 0, {s: s / 10 for s in steps}),
        fake_run(tmp_path, "ppo", "CartPole-v1", 1, {s: s / 10 + 100 for s in steps}),
        fake_run(tmp_path, "a2c", "CartPole-v1", 0, {s: 5.0 for s in steps[:3]},
                 extra={3000: 7.0, 2000: 6.0}),  # a resumed run: step 2000 logged again
    ]


def test_scalars_of_every_event_file_merge_by_step(runs):
    points = read_scalars(runs[2])[TAG]
    assert points == [(0, 5.0), (1000, 5.0), (2000, 6.0), (3000, 7.0)]
    curve = load_curve(runs[2])
    assert (curve.algo, curve.env_id, curve.seed) == ("a2c", "CartPole-v1", 0)
    np.testing.assert_array_equal(curve.steps, [0, 1000, 2000, 3000])


def test_plot_draws_the_mean_and_band_of_seeds_and_single_runs(runs, tmp_path):
    out, lines = plot_curves(runs, tmp_path / "pics" / "curves.png")
    image = matplotlib.image.imread(out)
    assert image.shape[:2] == (500, 800)  # 8x5 inches at 100 dpi
    assert image[..., :3].std() > 0.05  # not a blank canvas
    assert [line.label for line in lines] == [
        "ppo CartPole-v1: mean ± std of 2 runs",
        "a2c CartPole-v1 seed 0",
    ]
    mean = lines[0]
    assert mean.steps[0] == 0 and mean.steps[-1] == 4000
    # seeds x/10 and x/10 + 100: mean x/10 + 50, std 50 at every step
    np.testing.assert_allclose(mean.values, mean.steps / 10 + 50, rtol=1e-9)
    np.testing.assert_allclose(mean.band, [mean.values - 50, mean.values + 50], rtol=1e-9)
    # --band ci: the IQM of two runs is their mean; its bootstrap 95% interval runs from one
    # run to the other (a quarter of the resamples draw the lower run twice, a quarter the upper)
    _, (ci, _) = plot_curves(runs, tmp_path / "ci.png", band="ci")
    assert ci.label == "ppo CartPole-v1: IQM, 95% CI of 2 runs"
    np.testing.assert_allclose(ci.values, ci.steps / 10 + 50, rtol=1e-9)
    np.testing.assert_allclose(ci.band, [ci.steps / 10, ci.steps / 10 + 100], rtol=1e-9)
    _, per_run = plot_curves(runs, tmp_path / "each.svg", per_run=True, metric="train/loss")
    assert len(per_run) == 3 and per_run[1].values[0] == -100.0
    twice = fake_run(tmp_path, "a2c", "CartPole-v1", 0, {0: 1.0, 10: 2.0})  # seed 0 again
    _, (*_, first, second) = plot_curves([*runs, twice], tmp_path / "x.png", per_run=True)
    assert (first.label, second.label) == (f"a2c CartPole-v1 seed 0 ({runs[2].name})",
                                           f"a2c CartPole-v1 seed 0 ({twice.name})")
    assert (tmp_path / "each.svg").read_text().lstrip().startswith("<?xml")


def test_smoothing_is_tensorboards_debiased_moving_average():
    values = np.array([0.0, 10.0, 10.0])
    np.testing.assert_allclose(smooth(values, 0.0), values)
    # debiased EMA with weight 0.5: 0, (0*.5*.5 + 10*.5)/(.75), ...
    np.testing.assert_allclose(smooth(values, 0.5), [0.0, 10 * 0.5 / 0.75, 7.5 / 0.875])
    with pytest.raises(ConfigError, match=r"smoothing weight must be in \[0, 1\)"):
        smooth(values, 1.0)


def test_plot_cli_writes_the_picture_and_names_bad_input(runs, tmp_path, capsys):
    out = tmp_path / "c.png"
    assert cli.main(["plot", *map(str, runs), "--out", str(out), "--smooth", "0.3"]) == 0
    assert "wrote" in capsys.readouterr().out and out.stat().st_size > 1000
    assert cli.main(["plot", str(runs[0]), "--metric", "nope/x"]) == 2
    err = capsys.readouterr().err
    assert "has no scalar 'nope/x'" in err and TAG in err and "Traceback" not in err
    assert cli.main(["plot", str(tmp_path / "missing")]) == 2
    assert "run directory not found" in capsys.readouterr().err
    assert cli.main(["plot", str(runs[0]), "--out", str(tmp_path / "c.nope")]) == 2
    assert "cannot write" in capsys.readouterr().err
    empty = new_run_dir(tmp_path, "CartPole-v1", "ppo", 9)
    write_config(empty, {"algo": "ppo", "env_id": "CartPole-v1", "config": {}})
    assert cli.main(["plot", str(empty)]) == 2
    assert "no TensorBoard scalars" in capsys.readouterr().err


def test_panels_one_per_env(runs, tmp_path):
    pendulum = fake_run(tmp_path, "sac", "Pendulum-v1", 0, {0: -1500.0, 500: -900.0})
    panels = {"CartPole-v1": [load_curve(r) for r in runs], "Pendulum-v1": [load_curve(pendulum)]}
    out, lines = plot_panels(panels, tmp_path / "bench.png")
    assert matplotlib.image.imread(out).shape[:2] == (400, 1100)  # two 5.5x4-inch panels
    assert [len(panel) for panel in lines] == [2, 1]
    assert lines[1][0].label.startswith("sac Pendulum-v1 seed 0")
