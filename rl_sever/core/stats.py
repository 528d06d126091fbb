"""Aggregate statistics of RL results over seeds, with stratified bootstrap confidence intervals.

The method (Agarwal et al., "Deep RL at the edge of the statistical precipice", NeurIPS 2021):
- the interquartile mean (IQM) of n scores is the mean of what is left once int(n / 4) scores
  are cut from each end of the sorted scores (SciPy's `trim_mean(x, 0.25)`); with n < 4 it is
  the plain mean;
- a 95% confidence interval is the percentile interval of the statistic over `reps` bootstrap
  resamples (2.5th and 97.5th percentiles, NumPy's linear interpolation); each resample draws
  each task's runs with replacement from that task's runs (stratified: every task keeps its
  number of runs), and the statistic is taken over all tasks' drawn scores together;
- a performance profile is the fraction of runs whose score exceeds tau, for each tau, with
  the same stratified bootstrap for its band.
The resamples come from a generator seeded by `seed`: a report is the same every time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

REPS = 10_000
"""Bootstrap resamples per interval."""


def iqm(scores) -> float:
    """Interquartile mean of all `scores` (flattened)."""
    return float(_iqm_rows(np.asarray(scores, float).reshape(1, -1))[0])


def _iqm_rows(x: np.ndarray) -> np.ndarray:
    """IQM of each row of a [reps, n] array."""
    n = x.shape[1]
    cut = int(n * 0.25)
    return np.sort(x, axis=1)[:, cut:n - cut].mean(axis=1)


def _mean_rows(x: np.ndarray) -> np.ndarray:
    return x.mean(axis=1)


def _median_rows(x: np.ndarray) -> np.ndarray:
    return np.median(x, axis=1)


STATISTICS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "mean": _mean_rows, "median": _median_rows, "iqm": _iqm_rows}
"""Each maps a [reps, n] array of scores to one value per row."""


def stratified_resamples(tasks: Sequence[Sequence[float]], reps: int = REPS,
                         seed: int = 0) -> np.ndarray:
    """[reps, total runs] scores: each row draws every task's runs with replacement from that
    task's own runs, the tasks side by side."""
    rng = np.random.default_rng(seed)
    parts = []
    for scores in tasks:
        scores = np.asarray(scores, float)
        if scores.size == 0:
            raise ValueError("a task has no scores")
        parts.append(scores[rng.integers(0, scores.size, size=(reps, scores.size))])
    return np.concatenate(parts, axis=1)


def interval(tasks: Sequence[Sequence[float]], statistic: str = "iqm", *, reps: int = REPS,
             seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    """(point estimate, low, high) of `statistic` over the tasks' scores, with the stratified
    bootstrap percentile interval at `level`."""
    fn = STATISTICS[statistic]
    flat = np.concatenate([np.asarray(t, float) for t in tasks]).reshape(1, -1)
    point = float(fn(flat)[0])
    values = fn(stratified_resamples(tasks, reps, seed))
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return point, float(low), float(high)


def summarize(tasks: Sequence[Sequence[float]], *, reps: int = REPS, seed: int = 0) -> dict:
    """{mean, median, iqm: {value, ci: [low, high]}, runs} over the tasks' scores."""
    out = {"runs": int(sum(len(t) for t in tasks))}
    for i, name in enumerate(STATISTICS):
        point, low, high = interval(tasks, name, reps=reps, seed=seed + i)
        out[name] = {"value": point, "ci": [low, high]}
    return out


def performance_profile(tasks: Sequence[Sequence[float]], taus: np.ndarray, *,
                        reps: int = 2_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(fraction of runs scoring above each tau, [2, len(taus)] 95% band)."""
    flat = np.concatenate([np.asarray(t, float) for t in tasks])
    profile = (flat[:, None] > taus[None, :]).mean(axis=0)
    samples = stratified_resamples(tasks, reps, seed)
    fractions = (samples[:, :, None] > taus[None, None, :]).mean(axis=1)
    return profile, np.percentile(fractions, [2.5, 97.5], axis=0)


def curve_band(curves: np.ndarray, *, reps: int = 2_000, seed: int = 0,
               statistic: str = "iqm") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(statistic, low, high) at each point of [runs, points] curves of one task, with the
    bootstrap 95% interval over runs (the same resampled runs at every point)."""
    curves = np.asarray(curves, float)
    runs, points = curves.shape
    rng = np.random.default_rng(seed)
    index = rng.integers(0, runs, size=(reps, runs))
    fn = STATISTICS[statistic]
    value = np.array([fn(curves[:, j][None, :])[0] for j in range(points)])
    low, high = np.empty(points), np.empty(points)
    for j in range(points):
        stats = fn(curves[index, j])
        low[j], high[j] = np.percentile(stats, [2.5, 97.5])
    return value, low, high


def normalized(scores, low: float, high: float):
    """(scores - low) / (high - low): 0 at `low` (a random policy), 1 at `high` (a reference)."""
    if high == low:
        raise ValueError("a reference score equals the random score")
    return (np.asarray(scores, float) - low) / (high - low)
