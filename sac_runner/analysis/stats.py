"""Statistics over seeds: mean and IQM with percentile-bootstrap CIs, the probability of improvement, and
curves aggregated over seeds (cli/report.py documents the method)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from scipy.stats import mannwhitneyu, trim_mean

from sac_runner.analysis.runs import Group, Run

DEFAULT_BOOTSTRAP = 2000
DEFAULT_SEED = 0
# Rows with fewer seeds are flagged: their bootstrap CIs say little.
FEW_SEEDS = 5
CI_LEVEL = 0.95


@dataclass
class Stats:
    mean: float
    ci_low: float
    ci_high: float
    iqm: float
    iqm_low: float
    iqm_high: float
    n: int


@dataclass
class Summary:
    env_id: str
    label: str
    n_seeds: int
    final: Stats
    best: Stats
    last_step_min: int
    last_step_max: int
    finals: list[float] = field(default_factory=list)

    @property
    def few_seeds(self) -> bool:
        return self.n_seeds < FEW_SEEDS


# ---------------------------------------------------------------- statistics


def _boot_means(x: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """x: (..., n) -> bootstrap means (..., n_boot), same resample indices for all rows."""
    return _boot(x, n_boot, seed, lambda r: r.mean(axis=-1))


def _boot(x: np.ndarray, n_boot: int, seed: int, stat) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = x.shape[-1]
    idx = rng.integers(0, n, size=(n_boot, n))
    return stat(x[..., idx])


def iqm(values: Sequence[float], axis: int = -1):
    """Interquartile mean: the 25% trimmed mean (rliable's IQM)."""

    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return math.nan
    out = trim_mean(x, 0.25, axis=axis)
    return float(out) if np.ndim(out) == 0 else out


def bootstrap_ci(values: Sequence[float], n_boot: int = DEFAULT_BOOTSTRAP,
                 seed: int = DEFAULT_SEED, level: float = CI_LEVEL,
                 statistic: str = "mean") -> tuple[float, float]:
    """Percentile bootstrap CI over seeds of the mean (or "iqm"); one value -> (v, v)."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return (math.nan, math.nan)
    if x.size == 1:
        return (float(x[0]), float(x[0]))
    stat = (lambda r: r.mean(axis=-1)) if statistic == "mean" else (lambda r: iqm(r, axis=-1))
    boots = _boot(x, n_boot, seed, stat)
    tail = (1.0 - level) / 2.0 * 100.0
    lo, hi = np.percentile(boots, [tail, 100.0 - tail])
    return (float(lo), float(hi))


def describe(values: Sequence[float], n_boot: int = DEFAULT_BOOTSTRAP,
             seed: int = DEFAULT_SEED) -> Stats:
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return Stats(*([math.nan] * 6), n=0)
    lo, hi = bootstrap_ci(x, n_boot, seed)
    ilo, ihi = bootstrap_ci(x, n_boot, seed, statistic="iqm")
    return Stats(mean=float(x.mean()), ci_low=lo, ci_high=hi, iqm=iqm(x), iqm_low=ilo, iqm_high=ihi,
                 n=int(x.size))


def probability_of_improvement(x: Sequence[float], y: Sequence[float]) -> float:
    """P(X > Y) + P(X = Y) / 2 for a random seed of each: Mann-Whitney U / (n_x * n_y)."""

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.size == 0 or y.size == 0:
        return math.nan
    return float(mannwhitneyu(x, y).statistic) / (x.size * y.size)


def summarize(groups: Sequence[Group], n_boot: int = DEFAULT_BOOTSTRAP,
              seed: int = DEFAULT_SEED) -> list[Summary]:
    out = []
    for g in groups:
        finals = [float(r.values[-1]) for r in g.runs]
        bests = [b for b in (r.best() for r in g.runs) if b is not None]
        last = [int(r.steps[-1]) for r in g.runs]
        out.append(Summary(
            env_id=g.env_id, label=g.label, n_seeds=len(g.runs),
            final=describe(finals, n_boot, seed), best=describe(bests, n_boot, seed),
            last_step_min=min(last), last_step_max=max(last), finals=finals,
        ))
    return out


def aggregate_curve(runs: Sequence[Run], n_boot: int = DEFAULT_BOOTSTRAP,
                    seed: int = DEFAULT_SEED):
    """Mean and 95% bootstrap band over seeds on the union of eval steps.

    Returns (steps, mean, low, high, n) where n[i] is how many seeds cover steps[i].
    """
    steps = np.unique(np.concatenate([r.steps for r in runs]))
    grid = np.full((steps.size, len(runs)), np.nan)
    for j, r in enumerate(runs):
        inside = (steps >= r.steps[0]) & (steps <= r.steps[-1])
        grid[inside, j] = np.interp(steps[inside], r.steps, r.values)
    covered = ~np.isnan(grid)
    n = covered.sum(axis=1)
    mean = np.nanmean(grid, axis=1)
    low, high = mean.copy(), mean.copy()
    # rows with the same set of covering seeds share one bootstrap
    patterns: dict[bytes, list[int]] = {}
    for i in range(steps.size):
        if n[i] > 1:
            patterns.setdefault(covered[i].tobytes(), []).append(i)
    for rows in patterns.values():
        cols = covered[rows[0]]
        sub = grid[np.ix_(rows, cols)]
        chunk = max(1, 4_000_000 // (n_boot * sub.shape[1]))
        for s in range(0, len(rows), chunk):
            means = _boot_means(sub[s:s + chunk], n_boot, seed)
            lo, hi = np.percentile(means, [2.5, 97.5], axis=-1)
            low[rows[s:s + chunk]] = lo
            high[rows[s:s + chunk]] = hi
    return steps, mean, low, high, n


