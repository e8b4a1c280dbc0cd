"""Two optimizers compared seed by seed, with a verdict on which is larger.

Runs of one architecture and seed share their initial weights and their data order, whatever
the optimizer, so two optimizers' runs of the same seed are a pair: their difference is free of
what the seed decides. :func:`compare_optimizers` takes the per-seed values of any metric of a
summary table (training or Hessian), pairs the runs by seed and gives, per architecture and
checkpoint, the mean difference, its two-sided Student-t interval (scipy's ``ttest_1samp``),
the paired t-test's p-value, and a :func:`verdict` on an expected ordering. Runs that diverged,
or have no value, are left out; a pair needs both runs.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import stats

from infoopt.report.tables import metric_rows

if TYPE_CHECKING:
    from scipy.stats._result_classes import TtestResult

CONFIDENCE = 0.95
# An expected ordering of optimizer a against b: a larger (">") or a smaller ("<").
DIRECTIONS = (">", "<")
COLUMNS = [
    "metric",
    "arch",
    "progress",
    "optimizer_a",
    "optimizer_b",
    "n_pairs",
    "mean_difference",
    "ci_low",
    "ci_high",
    "p_value",
    "expected",
    "verdict",
]


def _ttest(x: np.ndarray) -> TtestResult:
    """scipy's one-sample t-test of mean 0 on ``x`` (two or more values). scipy warns of
    precision loss when the values are (nearly) identical; its result is then still the
    t-test's, of a zero or tiny ``s``, so that warning is silenced."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Precision loss occurred", RuntimeWarning)
        return stats.ttest_1samp(x, 0.0)


def t_interval(
    values: Iterable[float], confidence: float = CONFIDENCE
) -> tuple[float, float, float]:
    """(mean, low, high): ``mean ± t_{(1+confidence)/2, n−1} · s/√n`` with ``s`` the sample
    standard deviation (scipy's ``ttest_1samp(...).confidence_interval``); the bounds are NaN
    for fewer than two values, all three for none."""
    x = np.asarray(list(values), dtype=float)
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if len(x) == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    if len(x) < 2:
        return mean, math.nan, math.nan
    interval = _ttest(x).confidence_interval(confidence_level=confidence)
    return mean, float(interval.low), float(interval.high)


def paired_t_pvalue(differences: Iterable[float]) -> float:
    """Two-sided p-value of the paired t-test, t = mean(d)/(s_d/√n) with n − 1 degrees of
    freedom (scipy's ``ttest_1samp`` of the differences). Differences that are all equal give
    1 if they are 0 (no difference at all) and 0 otherwise; fewer than two give NaN."""
    d = np.asarray(list(differences), dtype=float)
    if len(d) < 2:
        return math.nan
    if not d.any():
        # t = 0/0, which scipy gives as NaN.
        return 1.0
    return float(_ttest(d).pvalue)


def paired_differences(rows: pd.DataFrame, a: str, b: str) -> pd.Series:
    """``value(a) − value(b)`` per seed (indexed by seed), over the seeds where both runs
    finished with a value. ``rows``: one metric at one checkpoint of one architecture, at most
    a row per optimizer and seed."""
    ok = rows[(rows["status"] == "ok") & np.isfinite(rows["value"])]
    per_seed = ok.pivot(index="seed", columns="optimizer", values="value")
    if not {a, b} <= set(per_seed.columns):
        return pd.Series(dtype=float)
    both = per_seed[[a, b]].dropna()
    return both[a] - both[b]


def verdict(low: float, high: float, expected: str) -> str:
    """The verdict on the ordering ``expected`` of a against b (a DIRECTIONS entry) from the
    interval [low, high] of a − b: ``reproduced`` where it excludes 0 on the expected side,
    ``contradicted`` where it excludes 0 on the other, ``inconclusive`` where it contains 0 or
    has no bounds (fewer than two pairs)."""
    if expected not in DIRECTIONS:
        raise ValueError(f"expected must be one of {DIRECTIONS}, got {expected!r}")
    if not (low > 0 or high < 0):
        return "inconclusive"
    return "reproduced" if (low > 0) == (expected == ">") else "contradicted"


def compare_optimizers(
    long: pd.DataFrame,
    metric: str,
    a: str,
    b: str,
    expected: str,
    confidence: float = CONFIDENCE,
) -> pd.DataFrame:
    """Optimizer ``a`` against ``b`` on ``metric`` of ``long``, a summary table (a row per run,
    checkpoint and metric: ``training.parquet``, ``hessian.parquet``, or both concatenated).

    A row per architecture and checkpoint (``progress``): ``n_pairs`` seeds where both runs
    finished, the ``mean_difference`` a − b over them, its t-interval ``ci_low``–``ci_high``,
    the paired t-test's two-sided ``p_value``, and the :func:`verdict` on ``expected`` (">":
    a is larger). One pair, or none, is always inconclusive.
    """
    records = []
    for (arch, progress), rows in metric_rows(long, metric).groupby(["arch", "progress"]):
        d = paired_differences(rows, a, b)
        mean, low, high = t_interval(d, confidence)
        records.append(
            {
                "metric": metric,
                "arch": arch,
                "progress": progress,
                "optimizer_a": a,
                "optimizer_b": b,
                "n_pairs": len(d),
                "mean_difference": mean,
                "ci_low": low,
                "ci_high": high,
                "p_value": paired_t_pvalue(d),
                "expected": expected,
                "verdict": verdict(low, high, expected),
            }
        )
    return pd.DataFrame(records, columns=COLUMNS)
