"""Learning curves from run folders: the scalars of their TensorBoard event files, drawn against
environment steps (`rl-sever plot`, bench/returns.py).

Runs of the same (algorithm, env) are seeds of one experiment: drawn as their mean with a band
of one standard deviation (on the steps all of them reached), or one line per run on request.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rl_sever.core.rundir import read_config
from rl_sever.core.stats import curve_band
from rl_sever.errors import ConfigError, RLSeverError

DEFAULT_METRIC = "rollout/ep_rew_mean"
GRID_POINTS = 200


@dataclass
class Curve:
    """One run's series of `metric`: steps ascending, one value per step."""

    run_dir: Path
    algo: str
    env_id: str
    seed: int
    steps: np.ndarray
    values: np.ndarray


def read_scalars(run_dir: str | Path) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(step, value)] of every scalar summary in the run's event files (a resumed run
    has several; a step logged twice keeps its last value)."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.util import tensor_util

    points: dict[str, dict[int, float]] = defaultdict(dict)
    files = sorted(Path(run_dir).glob("events.out.tfevents.*"))
    for path in sorted(files, key=lambda p: p.stat().st_mtime):
        for event in EventFileLoader(str(path)).Load():
            if not event.HasField("summary"):
                continue
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name != "scalars":
                    continue
                points[value.tag][int(event.step)] = float(tensor_util.make_ndarray(value.tensor))
    return {tag: sorted(series.items()) for tag, series in points.items()}


def load_curve(run_dir: str | Path, metric: str = DEFAULT_METRIC) -> Curve:
    """The `metric` series of one run folder, with clear errors for what is missing."""
    run_dir = Path(run_dir)
    record = read_config(run_dir)  # names a missing or foreign folder
    scalars = read_scalars(run_dir)
    if not scalars:
        raise RLSeverError(f"{run_dir} has no TensorBoard scalars yet (no event files, or the "
                           f"run has not logged)")
    if metric not in scalars:
        tags = ", ".join(sorted(scalars))
        raise ConfigError(f"{run_dir} has no scalar '{metric}'; it has: {tags}")
    steps, values = zip(*scalars[metric])
    return Curve(run_dir, record["algo"], record["env_id"], int(record["config"].get("seed", 0)),
                 np.array(steps, np.int64), np.array(values, np.float64))


def smooth(values: np.ndarray, weight: float) -> np.ndarray:
    """TensorBoard's exponential moving average (weight 0: unchanged), debiased at the start."""
    if not 0.0 <= weight < 1.0:
        raise ConfigError(f"smoothing weight must be in [0, 1), got {weight}")
    if weight == 0.0 or len(values) == 0:
        return values
    out, last, norm = np.empty_like(values), 0.0, 0.0
    for i, v in enumerate(values):
        last, norm = last * weight + (1 - weight) * v, norm * weight + (1 - weight)
        out[i] = last / norm
    return out


def mean_band(curves: list[Curve], points: int = GRID_POINTS, band: str = "std"):
    """(steps, centre, low, high) of the runs interpolated on a common grid over the steps all
    of them reached (from the latest first point to the earliest last point): their mean ± one
    std (band "std"), or their IQM and its bootstrap 95% confidence interval (band "ci",
    rl_sever.core.stats)."""
    lo = max(int(c.steps[0]) for c in curves)
    hi = min(int(c.steps[-1]) for c in curves)
    if hi <= lo:
        raise RLSeverError(f"the runs of {curves[0].algo} on {curves[0].env_id} share no step "
                           "range to average over; plot them with --per-run")
    grid = np.linspace(lo, hi, points)
    stacked = np.stack([np.interp(grid, c.steps, c.values) for c in curves])
    if band == "ci":
        return (grid, *curve_band(stacked))
    mean, std = stacked.mean(axis=0), stacked.std(axis=0)
    return grid, mean, mean - std, mean + std


@dataclass
class Line:
    """One drawn series: a run, or an experiment's runs summarised with a band (low, high)."""

    label: str
    steps: np.ndarray
    values: np.ndarray
    band: tuple[np.ndarray, np.ndarray] | None = None


BAND_LABEL = {"std": "mean ± std", "ci": "IQM, 95% CI"}


def lines_of(curves: list[Curve], *, per_run: bool = False, band: str = "std") -> list[Line]:
    """What `plot_curves` draws: one line per run, or per (algo, env) with several runs their
    mean and std, or their IQM and 95% confidence interval (`band`; unless `per_run`)."""
    out, groups = [], {}  # (algo, env_id) -> its runs, in first-seen order
    for c in curves:
        groups.setdefault((c.algo, c.env_id), []).append(c)
    seeds = [(c.algo, c.env_id, c.seed) for c in curves]
    for (algo, env_id), runs in groups.items():
        if per_run or len(runs) == 1:
            for c in runs:  # the run folder's name only where a seed repeats
                same = seeds.count((algo, env_id, c.seed)) > 1
                label = f"{algo} {env_id} seed {c.seed}" + (f" ({c.run_dir.name})" if same else "")
                out.append(Line(label, c.steps, c.values))
        else:
            grid, centre, low, high = mean_band(runs, band=band)
            out.append(Line(f"{algo} {env_id}: {BAND_LABEL[band]} of {len(runs)} runs", grid,
                            centre, (low, high)))
    return out


def plot_curves(run_dirs: list[str | Path], out: str | Path, *, metric: str = DEFAULT_METRIC,
                per_run: bool = False, smoothing: float = 0.0, title: str | None = None,
                band: str = "std") -> tuple[Path, list[Line]]:
    """Draw `metric` against environment steps for every run into the image file `out`
    (PNG, SVG or PDF, by its suffix). Returns the path written and the lines drawn."""
    if not run_dirs:
        raise ConfigError("plot needs at least one run directory")
    curves = [load_curve(d, metric) for d in run_dirs]
    for c in curves:
        c.values = smooth(c.values, smoothing)
    ylabel = metric + (f" (smoothed {smoothing:g})" if smoothing else "")
    out, (lines,) = plot_panels({title or metric: curves}, out, per_run=per_run, ylabel=ylabel,
                                band=band)
    return out, lines


def plot_panels(panels: dict[str, list[Curve]], out: str | Path, *, per_run: bool = False,
                ylabel: str = DEFAULT_METRIC, band: str = "std") -> tuple[Path, list[list[Line]]]:
    """One panel per entry (title -> its curves), side by side, into the image file `out`."""
    import matplotlib

    matplotlib.use("Agg")  # files only; no display needed
    import matplotlib.pyplot as plt

    n = len(panels)
    cols = min(n, 3)
    rows = -(-n // cols)
    figsize = (8, 5) if n == 1 else (5.5 * cols, 4 * rows)
    fig, axes = plt.subplots(rows, cols, figsize=figsize, dpi=100, squeeze=False)
    drawn_lines = []
    try:
        for ax, (title, curves) in zip(axes.flat, panels.items()):
            lines = lines_of(curves, per_run=per_run, band=band)
            drawn_lines.append(lines)
            for line in lines:
                (drawn,) = ax.plot(line.steps, line.values, linewidth=1.6, label=line.label)
                if line.band is not None:
                    ax.fill_between(line.steps, *line.band, color=drawn.get_color(), alpha=0.25)
            ax.set(xlabel="environment steps", ylabel=ylabel, title=title)
            ax.grid(alpha=0.3)
            ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 4))
            ax.legend(fontsize="small", loc="best")
        for ax in list(axes.flat)[n:]:
            ax.set_visible(False)
        fig.tight_layout()
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            fig.savefig(out)
        except ValueError as e:  # unknown suffix
            raise ConfigError(f"cannot write {out}: {e}") from None
    finally:
        plt.close(fig)
    return out, drawn_lines
