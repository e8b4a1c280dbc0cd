"""Do the Hessian metrics track generalization? Kendall's τ across runs and checkpoints.

Every (run, checkpoint) is one point: a metric of its Hessian against its generalization gap
(train − test accuracy, both at that checkpoint) or its test accuracy. The checkpoints of one
run share its seed and trajectory, so they are not independent; the runs are. The confidence
interval is therefore a cluster bootstrap: resample whole runs with replacement (within each
architecture, so a pooled resample keeps the experiment's mix of architectures), recompute τ
on all their checkpoints, and take the percentile interval. An asymptotic interval would
treat the checkpoints as independent and be too narrow.

τ is Kendall's τ-b (ties in either variable count as neither concordant nor discordant, as
``scipy.stats.kendalltau`` does). With the pair-sign matrices ``S_x[i, j] = sign(x_i − x_j)``
and a weight (multiplicity) vector ``w``, τ-b of the weighted sample is
``wᵀ(S_x∘S_y)w / sqrt(wᵀ|S_x|w · wᵀ|S_y|w)``: a copy of a point is tied with itself in both
variables, so it adds nothing. One matrix product therefore gives τ of every bootstrap resample.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from infoopt.collect import RUN_KEYS
from infoopt.seeding import derive_seed

METRICS = (
    "entropy_gap",
    "entropy_gap_deviation",
    "positive_block_ratio",
    "abs_trace_sum",
    "top_eigenvalue",
    "hessian_trace",
    "block_heterogeneity",
    "gradient_heterogeneity",
)
TARGETS = ("generalization_gap", "test_accuracy")
POOLED = "pooled"
COLUMNS = [
    "scope",
    "metric",
    "target",
    "tau",
    "ci_low",
    "ci_high",
    "confidence",
    "n_runs",
    "n_points",
    "n_boot",
]


def checkpoint_points(training: pd.DataFrame, hessian: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, checkpoint) that finished: the run's keys, ``progress``, the accuracies,
    ``generalization_gap`` and every Hessian metric (columns named as in the summary tables)."""
    keys = RUN_KEYS + ["progress"]

    def wide(long: pd.DataFrame) -> pd.DataFrame:
        ok = long[long["status"] == "ok"]
        return ok.pivot_table(index=keys, columns="metric", values="value", aggfunc="first")

    accuracy = wide(training)
    missing = {"train_accuracy", "test_accuracy"} - set(accuracy.columns)
    if missing:
        raise ValueError(f"the training table lacks {sorted(missing)}")
    accuracy = accuracy[["train_accuracy", "test_accuracy"]]
    accuracy["generalization_gap"] = accuracy["train_accuracy"] - accuracy["test_accuracy"]
    points = accuracy.join(wide(hessian), how="inner").reset_index()
    points.columns.name = None
    return points


def _pair_signs(values: np.ndarray) -> np.ndarray:
    return np.sign(values[:, None] - values[None, :])


def weighted_kendall_tau(x: np.ndarray, y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """τ-b of the sample in which point ``i`` appears ``weights[r, i]`` times, for each row ``r``
    of ``weights`` (shape ``(resamples, n)``). NaN where a variable is constant."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-d of equal length, got {x.shape} and {y.shape}")
    if np.isnan(x).any() or np.isnan(y).any():
        raise ValueError("x and y must not contain NaN (drop those points first)")
    weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    if weights.shape[1] != len(x):
        raise ValueError(f"weights have {weights.shape[1]} columns for {len(x)} points")
    sx, sy = _pair_signs(x), _pair_signs(y)

    def form(matrix: np.ndarray) -> np.ndarray:
        return np.einsum("ri,ri->r", weights @ matrix, weights)

    numerator, denominator = form(sx * sy), np.sqrt(form(np.abs(sx)) * form(np.abs(sy)))
    tau = np.full(len(weights), np.nan)
    np.divide(numerator, denominator, out=tau, where=denominator > 0)
    return tau


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's τ-b of the paired samples ``x`` and ``y``."""
    return float(weighted_kendall_tau(x, y, np.ones((1, len(x))))[0])


def cluster_bootstrap_weights(
    clusters: Sequence, strata: Sequence, n_boot: int, rng: np.random.Generator
) -> np.ndarray:
    """Multiplicity of each point in ``n_boot`` resamples that draw whole clusters with
    replacement, as many per stratum as the stratum has (shape ``(n_boot, n_points)``)."""
    cluster_codes, cluster_names = pd.factorize(pd.Series(list(clusters)))
    point_strata = pd.Series(list(strata))
    if len(point_strata) != len(cluster_codes):
        raise ValueError("clusters and strata must have one entry per point")
    cluster_strata = point_strata.groupby(cluster_codes).nunique()
    if (cluster_strata > 1).any():
        raise ValueError("every cluster must lie in a single stratum")
    stratum_of_cluster = point_strata.groupby(cluster_codes).first()
    counts = np.zeros((n_boot, len(cluster_names)))
    for _, members in stratum_of_cluster.groupby(stratum_of_cluster):
        size = len(members)
        drawn = rng.multinomial(size, np.full(size, 1.0 / size), size=n_boot)
        counts[:, members.index.to_numpy()] = drawn
    return counts[:, cluster_codes]


def check_bootstrap(n_boot: int, confidence: float) -> None:
    """A ValueError unless ``n_boot`` is positive and ``confidence`` lies in (0, 1)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be positive, got {n_boot}")


def percentile_interval(values: np.ndarray, confidence: float) -> tuple[float, float, int]:
    """The central ``confidence`` percentile interval of the values that are not NaN, and
    their number; NaN bounds where there is none."""
    values = values[~np.isnan(values)]
    if not len(values):
        return math.nan, math.nan, 0
    alpha = (1 - confidence) / 2
    low, high = np.quantile(values, [alpha, 1 - alpha])
    return float(low), float(high), len(values)


@dataclass(frozen=True)
class TauInterval:
    tau: float
    low: float
    high: float
    confidence: float
    n_boot: int  # resamples in which τ was defined (neither variable constant)


def kendall_interval(
    x: Sequence[float],
    y: Sequence[float],
    clusters: Sequence,
    strata: Sequence | None = None,
    *,
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> TauInterval:
    """τ-b of ``x`` and ``y`` with a percentile cluster-bootstrap interval (see the module)."""
    check_bootstrap(n_boot, confidence)
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    strata = [0] * len(x) if strata is None else strata
    weights = cluster_bootstrap_weights(clusters, strata, n_boot, np.random.default_rng(seed))
    low, high, used = percentile_interval(weighted_kendall_tau(x, y, weights), confidence)
    return TauInterval(kendall_tau(x, y), low, high, confidence, used)


def correlation_table(
    points: pd.DataFrame,
    metrics: Sequence[str] = METRICS,
    targets: Sequence[str] = TARGETS,
    *,
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """τ and its interval for every metric and target, per architecture and pooled over them.

    ``points`` is :func:`checkpoint_points`' table. Points where the metric or the target is
    missing are left out; a metric no checkpoint has gives a row of NaN with ``n_points`` 0.
    """
    unknown = sorted((set(metrics) | set(targets)) - set(points.columns))
    if unknown:
        raise ValueError(
            f"unknown columns {unknown}; the points table has: {sorted(points.columns)}"
        )
    scopes = [(arch, points[points["arch"] == arch]) for arch in sorted(points["arch"].unique())]
    scopes.append((POOLED, points))
    rows = []
    for scope, subset in scopes:
        for metric in metrics:
            for target in targets:
                pairs = subset.dropna(subset=[metric, target])
                runs = list(pairs[RUN_KEYS].itertuples(index=False, name=None))
                row = {"scope": scope, "metric": metric, "target": target}
                if pairs.empty:
                    interval = TauInterval(math.nan, math.nan, math.nan, confidence, 0)
                else:
                    interval = kendall_interval(
                        pairs[metric],
                        pairs[target],
                        runs,
                        pairs["arch"],
                        n_boot=n_boot,
                        confidence=confidence,
                        seed=derive_seed("correlation", seed, scope, metric, target),
                    )
                rows.append(
                    row
                    | {
                        "tau": interval.tau,
                        "ci_low": interval.low,
                        "ci_high": interval.high,
                        "confidence": confidence,
                        "n_runs": len(set(runs)),
                        "n_points": len(pairs),
                        "n_boot": interval.n_boot,
                    }
                )
    return pd.DataFrame(rows, columns=COLUMNS)


def to_markdown(table: pd.DataFrame, digits: int = 2) -> str:
    """A row per metric, a column per (target, scope): ``τ [low, high]``."""

    def cell(row: pd.Series) -> str:
        if math.isnan(row["tau"]):
            return "n/a"
        return f"{row['tau']:.{digits}f} [{row['ci_low']:.{digits}f}, {row['ci_high']:.{digits}f}]"

    cells = table.assign(cell=table.apply(cell, axis=1))
    wide = cells.pivot(index="metric", columns=["target", "scope"], values="cell")
    scopes = list(dict.fromkeys(table["scope"]))
    targets = list(dict.fromkeys(table["target"]))
    wide = wide.reindex(index=list(dict.fromkeys(table["metric"])))
    wide = wide[[(target, scope) for target in targets for scope in scopes]]
    wide.columns = [f"{target} ({scope})" for target, scope in wide.columns]
    level = round(100 * float(table["confidence"].iloc[0]))
    runs = ", ".join(
        f"{scope}: {n}" for scope, n in table.groupby("scope", sort=False)["n_runs"].max().items()
    )
    title = (
        f"Kendall's τ-b with {level} % cluster-bootstrap intervals (runs resampled; "
        f"runs per scope: {runs})"
    )
    return f"{title}\n\n{wide.reset_index().to_markdown(index=False)}\n"
