"""Two optimizers compared seed by seed, with a verdict on which is larger that holds up.

Runs of one architecture and seed share their initial weights and their data order, whatever
the optimizer, so two optimizers' runs of the same seed are a pair: their difference is free of
what the seed decides. :func:`compare_optimizers` takes the per-seed values of any metric of a
summary table (training or Hessian), pairs the runs by seed and gives, per architecture and
checkpoint, the mean difference, its two-sided Student-t interval (scipy's ``ttest_1samp``),
the paired t-test's p-value, the exact sign-flip test's p-value, and a verdict on an expected
ordering (:func:`assess`). Runs that diverged, or have no value, are left out; a pair needs
both runs.

A verdict (reproduced or contradicted) needs all of:

- ``n ≥ min_pairs(α)`` pairs: the exact sign-flip test's smallest two-sided p-value is
  2/2ⁿ, so below 6 pairs (2/32 = 0.0625 > 0.05) no test free of the normality assumption can
  reach the level, and the t-test's verdict would rest on that assumption alone;
- a spread: differences that are all equal (a metric counted in whole test images, a
  checkpoint where both runs are still the shared initial weights) make the t-interval a
  point and its p-value 0 or 1, an artefact rather than evidence;
- the t-interval excluding 0 and the sign-flip test agreeing with it at the level;
- within a family of tests, the family's adjusted p-value (:func:`holm`) at the level.

Otherwise the verdict is ``inconclusive`` and ``reason`` says why; for an undecided
comparison ``pairs_needed`` is the number of pairs a paired t-test needs for 80 % power at the
level, were the true difference and spread those observed (statsmodels' ``TTestPower``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower
from statsmodels.tools.sm_exceptions import ConvergenceWarning

from infoopt.report.tables import metric_rows
from infoopt.seeding import derive_seed

if TYPE_CHECKING:
    from scipy.stats._result_classes import TtestResult

CONFIDENCE = 0.95
# The power a study sized by ``pairs_needed`` has to detect the observed difference.
POWER = 0.8
# An expected ordering of optimizer a against b: a larger (">") or a smaller ("<").
DIRECTIONS = (">", "<")
VERDICTS = ("reproduced", "contradicted", "inconclusive")
# Why a comparison is inconclusive, in the order they are checked.
REASONS = (
    "too few pairs",
    "no spread",
    "interval contains 0",
    "tests disagree",
    "not significant after Holm",
)
# Differences whose sample std is below this share of their mean are all equal up to rounding
# (a − b of two values each a multiple of 1/n_images is not exactly one float).
SPREAD_RTOL = 1e-9
# Above this many pairs the sign-flip test samples sign vectors instead of enumerating them.
EXACT_SIGN_FLIPS = 16
SIGN_FLIP_SAMPLES = 2**16
COLUMNS = [
    "metric",
    "arch",
    "progress",
    "optimizer_a",
    "optimizer_b",
    "n_pairs",
    "mean_difference",
    "sd_difference",
    "ci_low",
    "ci_high",
    "p_value",
    "sign_flip_p",
    "expected",
    "verdict",
    "reason",
    "pairs_needed",
    "pairs_needed_note",
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


def sign_flip_pvalue(differences: Iterable[float]) -> float:
    """Two-sided sign-flip permutation p-value of the mean difference, scipy's
    ``permutation_test`` of one sample (whose ``samples`` permutations flip signs): twice the
    smaller of the shares of sign vectors s ∈ {±1}ⁿ with mean(s·d) ≤ mean(d) and with
    mean(s·d) ≥ mean(d), at most 1.
    Exact (all 2ⁿ vectors, where it is the share with |mean(s·d)| ≥ |mean(d)|) up to
    ``EXACT_SIGN_FLIPS`` pairs, else from ``SIGN_FLIP_SAMPLES`` seeded random vectors plus the
    observed one. 1 for a single difference (both signs are as extreme), NaN without any."""
    d = np.asarray(list(differences), dtype=float)
    if len(d) == 0:
        return math.nan
    if len(d) == 1:
        return 1.0
    result = stats.permutation_test(
        (d,),
        np.mean,
        permutation_type="samples",
        vectorized=True,
        n_resamples=math.inf if len(d) <= EXACT_SIGN_FLIPS else SIGN_FLIP_SAMPLES,
        rng=derive_seed("sign_flip", len(d)),
    )
    return float(result.pvalue)


def sign_flip_min_pvalue(n_pairs: int) -> float:
    """The smallest two-sided p-value the exact sign-flip test can give with ``n_pairs``."""
    return min(1.0, 2.0 / 2**n_pairs) if n_pairs else math.nan


def min_pairs(alpha: float = 1 - CONFIDENCE) -> int:
    """The fewest pairs with which the exact sign-flip test can reach two-sided level
    ``alpha``: the smallest n with 2/2ⁿ ≤ alpha (6 at 0.05)."""
    if not 0 < alpha < 1:
        raise ValueError(f"the level must be in (0, 1), got {alpha}")
    return max(1, math.ceil(math.log2(2 / alpha)))


def holm(p_values: Iterable[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values of one family of tests (statsmodels'
    ``multipletests``), which control the chance of any false verdict in the family; a NaN
    (no test) stays NaN and is not counted in the family."""
    p = np.asarray(list(p_values), dtype=float)
    adjusted = np.full_like(p, math.nan)
    tested = np.isfinite(p)
    if tested.any():
        adjusted[tested] = multipletests(p[tested], method="holm")[1]
    return adjusted


def paired_differences(rows: pd.DataFrame, a: str, b: str, between: str = "optimizer") -> pd.Series:
    """``value(a) − value(b)`` per seed (indexed by seed), over the seeds where both runs
    finished with a value; ``a`` and ``b`` are values of the column ``between``. ``rows``: one
    metric at one checkpoint, at most a row per ``between`` value and seed."""
    ok = rows[(rows["status"] == "ok") & np.isfinite(rows["value"])]
    per_seed = ok.pivot(index="seed", columns=between, values="value")
    if not {a, b} <= set(per_seed.columns):
        return pd.Series(dtype=float)
    both = per_seed[[a, b]].dropna()
    return both[a] - both[b]


def verdict(low: float, high: float, expected: str) -> str:
    """The direction the interval [low, high] of a − b shows on the ordering ``expected`` of
    a against b (a DIRECTIONS entry): ``reproduced`` where it excludes 0 on the expected side,
    ``contradicted`` where it excludes 0 on the other, ``inconclusive`` where it contains 0 or
    has no bounds (fewer than two pairs). :func:`assess` adds the other conditions."""
    if expected not in DIRECTIONS:
        raise ValueError(f"expected must be one of {DIRECTIONS}, got {expected!r}")
    if not (low > 0 or high < 0):
        return "inconclusive"
    return "reproduced" if (low > 0) == (expected == ">") else "contradicted"


def has_spread(mean: float, sd: float) -> bool:
    """Whether differences of this mean and sample std are not all equal up to rounding."""
    return bool(sd > SPREAD_RTOL * abs(mean))


def decide(row: pd.Series, alpha: float, adjusted: float | None = None) -> tuple[str, str | None]:
    """(verdict, reason) of one comparison (a row of :data:`COLUMNS`); the reason is None for
    a verdict and the first of :data:`REASONS` that applies otherwise. ``adjusted``: the
    row's p-value adjusted within its family, None outside a family."""
    direction = verdict(row["ci_low"], row["ci_high"], row["expected"])
    if row["n_pairs"] < min_pairs(alpha):
        return "inconclusive", "too few pairs"
    if not has_spread(row["mean_difference"], row["sd_difference"]):
        return "inconclusive", "no spread"
    flip_significant = row["sign_flip_p"] <= alpha
    if direction == "inconclusive":
        return "inconclusive", "tests disagree" if flip_significant else "interval contains 0"
    if not flip_significant:
        return "inconclusive", "tests disagree"
    if adjusted is not None and not adjusted <= alpha:
        return "inconclusive", "not significant after Holm"
    return direction, None


def pairs_needed(
    n_pairs: int, mean: float, sd: float, alpha: float, power: float = POWER
) -> tuple[int | None, str]:
    """(pairs, note): the number of pairs with which a two-sided paired t-test at level
    ``alpha`` has ``power`` to detect a true difference ``mean`` with per-pair std ``sd``
    (statsmodels' ``TTestPower().solve_power`` of the effect size |mean|/sd), and never fewer
    than :func:`min_pairs`. None, with the note saying why, where the observations cannot size
    it: fewer than two pairs, no spread, or a mean of 0 (no number of pairs suffices)."""
    if n_pairs < 2:
        return None, "fewer than 2 pairs: no spread to size from"
    if mean == 0 or not math.isfinite(mean):
        return None, "unbounded: mean difference 0"
    if not has_spread(mean, sd):
        return None, "no spread to size from"
    effect = abs(mean) / sd
    fewest = min_pairs(alpha)
    analysis = TTestPower()
    # Past this power at the fewest pairs the exact test allows, the solver has no root above.
    # The noncentral t gives NaN far out in its tail, only for effects large enough for that.
    reached = analysis.power(effect, fewest, alpha, alternative="two-sided")
    if not reached < power:
        return fewest, f"{round(100 * power)} % power at α = {alpha:g}"
    with warnings.catch_warnings():
        # A root too far away comes back as NaN with a warning: no finite study found.
        warnings.simplefilter("ignore", ConvergenceWarning)
        needed = analysis.solve_power(
            effect_size=effect, alpha=alpha, power=power, alternative="two-sided"
        )
    needed = float(np.asarray(needed).squeeze())
    # Beyond what an Int64 column holds is as good as no finite study.
    if not needed < np.iinfo(np.int64).max:
        return None, "unbounded: effect too small to size"
    return max(math.ceil(needed), fewest), f"{round(100 * power)} % power at α = {alpha:g}"


def assess(
    table: pd.DataFrame, alpha: float = 1 - CONFIDENCE, adjusted: Iterable[float] | None = None
) -> pd.DataFrame:
    """``table`` (rows of :data:`COLUMNS`) with ``verdict``, ``reason``, ``pairs_needed``
    (an Int64, NA where decided or unsizable) and ``pairs_needed_note`` filled from its
    numbers, by :func:`decide` and :func:`pairs_needed`. ``adjusted``: the rows' p-values
    adjusted within one family, which must then also reach the level."""
    table = table.copy()
    gates = [None] * len(table) if adjusted is None else list(adjusted)
    decisions = [
        decide(row, alpha, gate) for (_, row), gate in zip(table.iterrows(), gates, strict=True)
    ]
    table["verdict"] = [v for v, _ in decisions]
    table["reason"] = pd.array([r for _, r in decisions], dtype="string")
    sizes = [
        (None, "decided")
        if v != "inconclusive"
        else pairs_needed(r["n_pairs"], r["mean_difference"], r["sd_difference"], alpha)
        for v, (_, r) in zip(table["verdict"], table.iterrows(), strict=True)
    ]
    table["pairs_needed"] = pd.array([n for n, _ in sizes], dtype="Int64")
    table["pairs_needed_note"] = pd.array([note for _, note in sizes], dtype="string")
    return table


def _compare(
    long: pd.DataFrame,
    metric: str,
    a: str,
    b: str,
    expected: str,
    between: str,
    confidence: float,
) -> list[dict]:
    """A record per checkpoint and value of the other of arch/optimizer than ``between``."""
    if expected not in DIRECTIONS:
        raise ValueError(f"expected must be one of {DIRECTIONS}, got {expected!r}")
    within = "optimizer" if between == "arch" else "arch"
    records = []
    for (group, progress), rows in metric_rows(long, metric).groupby([within, "progress"]):
        d = paired_differences(rows, a, b, between)
        mean, low, high = t_interval(d, confidence)
        records.append(
            {
                "metric": metric,
                within: group,
                "progress": progress,
                f"{between}_a": a,
                f"{between}_b": b,
                "n_pairs": len(d),
                "mean_difference": mean,
                "sd_difference": float(d.std(ddof=1)) if len(d) > 1 else math.nan,
                "ci_low": low,
                "ci_high": high,
                "p_value": paired_t_pvalue(d),
                "sign_flip_p": sign_flip_pvalue(d),
                "expected": expected,
            }
        )
    return records


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
    finished, the ``mean_difference`` a − b over them and its sample std ``sd_difference``,
    its t-interval ``ci_low``–``ci_high``, the paired t-test's two-sided ``p_value``, the
    exact sign-flip test's ``sign_flip_p``, and, on ``expected`` (">": a is larger), the
    ``verdict``, ``reason`` and ``pairs_needed`` of :func:`assess` at level 1 − confidence,
    each row tested on its own.
    """
    records = _compare(long, metric, a, b, expected, "optimizer", confidence)
    return assess(pd.DataFrame(records, columns=COLUMNS), 1 - confidence)


def compare_architectures(
    long: pd.DataFrame,
    metric: str,
    a: str,
    b: str,
    expected: str,
    confidence: float = CONFIDENCE,
) -> pd.DataFrame:
    """Architecture ``a`` against ``b`` on ``metric``, as :func:`compare_optimizers` but a row
    per optimizer and checkpoint, runs paired by seed within an optimizer (columns
    ``optimizer``, ``arch_a``, ``arch_b`` instead of ``arch``, ``optimizer_a``,
    ``optimizer_b``). A seed's runs of both architectures share the data order, not weights."""
    columns = [
        {"arch": "optimizer", "optimizer_a": "arch_a", "optimizer_b": "arch_b"}.get(c, c)
        for c in COLUMNS
    ]
    records = _compare(long, metric, a, b, expected, "arch", confidence)
    return assess(pd.DataFrame(records, columns=columns), 1 - confidence)
