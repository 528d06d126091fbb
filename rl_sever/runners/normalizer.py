"""Running normalisation statistics across runners (normalize_obs, normalize_reward).

Each runner normalises with the learner's statistics as they stood when the call began and
updates its copy while it steps; it returns what it saw as moments (mean, population variance,
count) recovered exactly from its statistics before and after (Chan et al.'s merge, which
RunningMeanStd uses, is invertible). The learner merges every runner's moments into its own
statistics (those it checkpoints and exports) and sends them with the next weights.
"""

from __future__ import annotations

import numpy as np


def _all(normalizer) -> list:
    return normalizer._all_stats()


def stats_of(normalizer) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """Copies of every running statistic of a VecNormalize: (mean, var, count) each."""
    return [(rms.mean.copy(), rms.var.copy(), float(rms.count)) for rms in _all(normalizer)]


def set_stats(normalizer, stats) -> None:
    """Overwrite a VecNormalize's statistics with `stats` (from `stats_of`)."""
    for rms, (mean, var, count) in zip(_all(normalizer), stats, strict=True):
        rms.mean, rms.var, rms.count = np.array(mean), np.array(var), float(count)


def moments_since(base, now) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """The moments of the samples merged into statistics `base` to give `now`."""
    out = []
    for (m0, v0, n0), (m1, v1, n1) in zip(base, now, strict=True):
        n = n1 - n0
        if n <= 0:
            out.append((np.zeros_like(m0), np.zeros_like(v0), 0.0))
            continue
        mean = (m1 * n1 - m0 * n0) / n
        m2 = v1 * n1 - v0 * n0 - np.square(mean - m0) * n0 * n / n1
        out.append((mean, np.maximum(m2 / n, 0.0), float(n)))
    return out


def merge_moments(normalizer, moments) -> None:
    """Merge one runner's moments (from `moments_since`) into the learner's statistics."""
    for rms, (mean, var, n) in zip(_all(normalizer), moments, strict=True):
        if n > 0:
            rms.update_from_moments(mean, var, n)
