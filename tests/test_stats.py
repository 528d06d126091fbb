"""The report's statistics (rl_sever.core.stats) against references computed another way: the
IQM by hand, and the bootstrap interval against the exact bootstrap distribution, enumerated."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from rl_sever.core import stats

A = [1.0, 4.0, 9.0, 30.0]  # two tasks of four runs each (fixed data)
B = [-2.0, 0.5, 3.0, 7.0]


def test_iqm_cuts_a_quarter_from_each_end():
    assert stats.iqm([5.0, 1.0, 3.0, 100.0]) == 4.0  # 1 and 100 cut: mean of 3 and 5
    assert stats.iqm([1.0, 2.0, 9.0]) == 4.0  # n < 4: int(0.75) = 0 cut, the mean
    x = np.arange(10.0)  # int(2.5) = 2 cut each side: mean of 2..7
    assert stats.iqm(x[::-1]) == pytest.approx(4.5)
    assert stats.iqm(np.arange(8.0)) == pytest.approx(np.mean([2, 3, 4, 5]))


def exact_bootstrap(tasks, statistic):
    """Every stratified resample, each equally likely: n^n index tuples per task."""
    per_task = [list(itertools.product(range(len(t)), repeat=len(t))) for t in tasks]
    values = []
    for choice in itertools.product(*per_task):
        drawn = np.concatenate([np.asarray(t)[list(idx)] for t, idx in zip(tasks, choice)])
        values.append(stats.STATISTICS[statistic](drawn[None, :])[0])
    return np.asarray(values)


@pytest.mark.parametrize("statistic", ["iqm", "mean", "median"])
def test_bootstrap_interval_matches_the_enumerated_bootstrap(statistic):
    exact = exact_bootstrap([A, B], statistic)  # 65,536 resamples
    low, high = np.percentile(exact, [2.5, 97.5])
    point, mc_low, mc_high = stats.interval([A, B], statistic, reps=40_000, seed=1)
    assert point == pytest.approx(stats.STATISTICS[statistic](np.array([A + B]))[0])
    span = exact.max() - exact.min()
    assert abs(mc_low - low) < 0.02 * span and abs(mc_high - high) < 0.02 * span
    assert mc_low < point < mc_high


def test_resamples_are_stratified_and_seeded():
    draws = stats.stratified_resamples([A, B], reps=500, seed=3)
    assert draws.shape == (500, 8)
    assert set(np.unique(draws[:, :4])) <= set(A) and set(np.unique(draws[:, 4:])) <= set(B)
    np.testing.assert_array_equal(draws, stats.stratified_resamples([A, B], reps=500, seed=3))
    assert not np.array_equal(draws, stats.stratified_resamples([A, B], reps=500, seed=4))
    with pytest.raises(ValueError, match="no scores"):
        stats.stratified_resamples([A, []])


def test_summary_profile_band_and_normalisation():
    summary = stats.summarize([A], reps=2000)
    assert summary["runs"] == 4 and summary["median"]["value"] == 6.5
    assert summary["iqm"]["value"] == 6.5 and summary["mean"]["value"] == 11.0
    low, high = summary["mean"]["ci"]
    assert min(A) <= low < 11.0 < high <= max(A)
    taus = np.array([0.0, 2.0, 10.0, 40.0])
    profile, band = stats.performance_profile([A], taus, reps=1000)
    np.testing.assert_allclose(profile, [1.0, 0.75, 0.25, 0.0])
    assert (band[0] <= profile).all() and (profile <= band[1]).all()
    curves = np.array([[0.0, 1.0], [2.0, 3.0]])
    value, lo, hi = stats.curve_band(curves, reps=1000)
    np.testing.assert_allclose([value, lo, hi], [[1.0, 2.0], [0.0, 1.0], [2.0, 3.0]])
    np.testing.assert_allclose(stats.normalized([23.7, 500.0], 23.7, 500.0), [0.0, 1.0])
    with pytest.raises(ValueError, match="equals the random score"):
        stats.normalized([1.0], 2.0, 2.0)
