"""The pictures of `rl-sever report`: learning curves of the evaluations (IQM over runs with
its bootstrap 95% band, one panel per case) and performance profiles (the fraction of runs
whose final return exceeds each threshold, with its band: normalised scores of every case in
one panel, or raw returns per case)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rl_sever.core import stats
from rl_sever.experiments.results import Case


def _figure(n: int):
    import matplotlib

    matplotlib.use("Agg")  # files only; no display needed
    import matplotlib.pyplot as plt

    cols = min(n, 3)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 4 * rows), dpi=100, squeeze=False)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    return plt, fig, axes


def draw_curves(cases: list[Case], out: Path, points: int = 100) -> Path | None:
    """Eval return against env steps per case (cases whose runs evaluated at least twice);
    None when no case has a curve."""
    drawable = [c for c in cases if all(len(r.steps) > 1 for r in c.runs)]
    if not drawable:
        return None
    plt, fig, axes = _figure(len(drawable))
    try:
        for ax, case in zip(axes.flat, drawable):
            lo = max(int(r.steps[0]) for r in case.runs)
            hi = min(int(r.steps[-1]) for r in case.runs)
            if len(case.runs) == 1 or hi <= lo:
                for r in case.runs:
                    ax.plot(r.steps, r.returns, linewidth=1.2, label=f"seed {r.seed}")
            else:
                grid = np.linspace(lo, hi, points)
                stacked = np.stack([np.interp(grid, r.steps, r.returns) for r in case.runs])
                value, low, high = stats.curve_band(stacked)
                (line,) = ax.plot(grid, value, linewidth=1.6,
                                  label=f"IQM of {len(case.runs)} runs, 95% CI")
                ax.fill_between(grid, low, high, color=line.get_color(), alpha=0.25)
            ax.set(xlabel="environment steps", ylabel="eval/mean_reward", title=case.name)
            ax.grid(alpha=0.3)
            ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 4))
            ax.legend(fontsize="small", loc="best")
        fig.tight_layout()
        fig.savefig(out)
    finally:
        plt.close(fig)
    return out


def draw_profiles(report: dict, out: Path, points: int = 101) -> Path:
    """Performance profiles of the final returns."""
    cases: list[Case] = report["_cases"]
    if report["normalize"]:  # one panel per algorithm (or folder): never pooled across them
        panels: dict[str, list] = {}
        for case, entry in zip(cases, report["cases"]):
            group = case.algo if not case.name.count(":") else case.name.split(":")[0]
            panels.setdefault(group, []).append(_normalized(entry))
        panels = {f"{g}: {len(t)} case{'s' * (len(t) != 1)}, {report['normalize']}-normalised":
                  t for g, t in panels.items()}
        xlabel = "normalised final return (tau)"
    else:
        panels = {case.name: [[r.final for r in case.runs]] for case in cases}
        xlabel = "final eval return (tau)"
    plt, fig, axes = _figure(len(panels))
    try:
        for ax, (title, tasks) in zip(axes.flat, panels.items()):
            flat = np.concatenate([np.asarray(t, float) for t in tasks])
            span = max(float(flat.max() - flat.min()), 1e-6)
            taus = np.linspace(flat.min() - 0.05 * span, flat.max() + 0.05 * span, points)
            profile, band = stats.performance_profile(tasks, taus)
            (line,) = ax.step(taus, profile, where="post", linewidth=1.6)
            ax.fill_between(taus, band[0], band[1], step="post", color=line.get_color(),
                            alpha=0.25)
            ax.set(xlabel=xlabel, ylabel="fraction of runs > tau", title=title, ylim=(-0.02, 1.02))
            ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out)
    finally:
        plt.close(fig)
    return out


def _normalized(case_entry: dict) -> list[float]:
    ref = case_entry["reference"]
    return list(stats.normalized([r["final"] for r in case_entry["runs"]], ref["random"],
                                 ref["reference"]))
