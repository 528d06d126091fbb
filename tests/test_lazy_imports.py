"""The CLI's processes load what Keras imports for plots only when something plots
(rl_sever.core.lazy_imports)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CODE = """
import sys
from pathlib import Path
from rl_sever import cli
out = Path(sys.argv[1])
assert cli.main(["train", "ppo", "CartPole-v1", "--steps", "64", "--n-envs", "2", "--set",
                 "n_steps=16", "--set", "batch_size=16", "--set", "n_epochs=1", "--no-progress",
                 "--logdir", str(out / "runs")]) == 0
print("trained", type(sys.modules.get("matplotlib.pyplot")).__name__,
      "matplotlib.figure" in sys.modules)
run = next(p.parent for p in (out / "runs").rglob("config.json"))
assert cli.main(["plot", str(run), "--out", str(out / "curves.png")]) == 0
print("plotted", type(sys.modules.get("matplotlib.pyplot")).__name__,
      "matplotlib.figure" in sys.modules)
"""


def test_a_cli_run_loads_pyplot_only_when_it_plots(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", CODE, str(tmp_path)], capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line.split() for line in proc.stdout.splitlines()
             if line.startswith(("trained", "plotted"))]
    # Keras imported pyplot when TensorFlow loaded; the module has not run (its figure module,
    # which it imports, is absent) until the plot command drew.
    assert lines[0] == ["trained", "_LazyModule", "False"]
    assert lines[1] == ["plotted", "module", "True"]
    assert (tmp_path / "curves.png").stat().st_size > 1000
