"""Which Hessian metric predicts generalization across a hyper-parameter grid? Jiang et al.'s
granulated Kendall coefficient.

Jiang, Neyshabur, Mobahi, Krishnan & Bengio (2020), *Fantastic Generalization Measures and
Where to Find Them* (ICLR), §4, Eq. 4–5: over the runs of a grid (:mod:`infoopt.grid`), a
measure is judged axis by axis. For axis i, a *group* is a set of runs that share every other
axis' value, and here also their architecture, optimizer and seed, so they differ in axis i
only. τ is Kendall's τ-b between the measure and the target within a group, m_i the mean of τ
over axis i's groups, and Ψ the mean of m_i over the axes. A measure that ranks runs the way
the target does within every group has Ψ = 1, whatever happens between groups; τ of all runs
at once (:mod:`infoopt.report.correlation`) would also reward a measure that only separates
the architectures or optimizers.

One point per run: the final checkpoint's Hessian metrics, its test accuracy and its
generalization gap, train − test accuracy (%), both measured on the whole split in eval mode
without augmentation (:meth:`infoopt.train.Trainer.write_checkpoint`). Sign: τ > 0 means that
the run with the larger metric has the larger gap (or test accuracy). Runs that diverged have
no final metrics and leave their groups; a group of fewer than 2 runs, or whose measure or
target is constant (τ-b undefined), is skipped, and Ψ is the mean over the axes with a group.

Intervals: a percentile bootstrap over runs. Each resample draws, from every grid (one
architecture, optimizer and seed), as many runs as it has, with replacement, and recomputes
every τ, m_i and Ψ on it with the drawn multiplicities (a run drawn twice is tied with its copy,
which τ-b leaves out, :func:`infoopt.report.correlation.weighted_kendall_tau`); a group left
with fewer than 2 distinct runs is skipped in that resample. All metrics, targets and scopes
share the resamples, so their intervals are comparable. Resamples in which a value is undefined
are left out of its interval (``n_boot`` counts the rest).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from infoopt.collect import RUN_KEYS
from infoopt.grid import grid_points
from infoopt.report.correlation import (
    METRICS,
    POOLED,
    TARGETS,
    check_bootstrap,
    checkpoint_points,
    cluster_bootstrap_weights,
    percentile_interval,
    weighted_kendall_tau,
)

PSI = "psi"
BASE = "base_optimizer"
# A grid: what varies and what is fixed within it.
GRID_KEYS = ["dataset", "arch", BASE, "seed"]
COLUMNS = [
    "scope",
    "metric",
    "target",
    "axis",
    "tau",
    "ci_low",
    "ci_high",
    "confidence",
    "n_groups",
    "n_runs",
    "n_boot",
]


def grid_axes(grid: Mapping[str, Mapping[str, Sequence]]) -> list[str]:
    """Every axis of any optimizer's grid, sorted."""
    return sorted({axis for axes in grid.values() for axis in axes})


def grid_runs(
    training: pd.DataFrame, hessian: pd.DataFrame, grid: Mapping[str, Mapping[str, Sequence]]
) -> pd.DataFrame:
    """A row per run that finished: its keys, its ``base_optimizer`` (the optimizer whose grid
    it is a point of, or its own name), its value on every axis of ``grid`` (NaN on the axes of
    other optimizers' grids), the final checkpoint's accuracies, ``generalization_gap`` and
    Hessian metrics. ``training`` and ``hessian`` are the summary tables (infoopt.collect)."""
    points = checkpoint_points(training, hessian)
    runs = points[points["progress"] == 1.0].drop(columns="progress")
    located = {
        name: (optimizer, point)
        for optimizer, axes in grid.items()
        for name, point in grid_points(optimizer, axes).items()
    }
    axes = grid_axes(grid)
    bases = [located.get(name, (name, {}))[0] for name in runs["optimizer"]]
    values = pd.DataFrame(
        [located.get(name, (name, {}))[1] for name in runs["optimizer"]],
        columns=axes,
        index=runs.index,
        dtype="float64",
    )
    measured = [column for column in runs.columns if column not in RUN_KEYS]
    runs = runs.assign(**{BASE: bases})[RUN_KEYS[:2] + [BASE] + RUN_KEYS[2:] + measured]
    return pd.concat([runs, values], axis=1).reset_index(drop=True)


def axis_groups(runs: pd.DataFrame, axes: Sequence[str]) -> dict[str, list[np.ndarray]]:
    """Axis -> the positions (in ``runs``) of each group of at least 2 runs that differ in that
    axis only: same dataset, architecture, base optimizer and seed, same value on every other
    axis."""
    groups = {}
    for axis in axes:
        others = GRID_KEYS + [other for other in axes if other != axis]
        indices = runs.groupby(others, dropna=False, sort=True).indices
        groups[axis] = [members for members in indices.values() if len(members) > 1]
    return groups


def _mean_defined(values: np.ndarray) -> np.ndarray:
    """The mean over the last axis of the entries that are not NaN; NaN where none is."""
    defined = ~np.isnan(values)
    count = defined.sum(axis=-1)
    total = np.where(defined, values, 0.0).sum(axis=-1)
    return np.divide(total, count, out=np.full(total.shape, np.nan), where=count > 0)


def granulated_kendall(
    x: np.ndarray,
    y: np.ndarray,
    groups: Mapping[str, Sequence[np.ndarray]],
    weights: np.ndarray,
) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, np.ndarray]]:
    """m_i of every axis and Ψ, for each row of ``weights`` (a run's multiplicity per resample,
    shape ``(resamples, runs)``): ``(m, psi, defined)``, ``m[axis]`` and ``psi`` of shape
    ``(resamples,)``, ``defined[axis]`` the number of groups whose τ is defined in each."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    m, defined = {}, {}
    for axis, members in groups.items():
        taus = np.full((len(weights), len(members)), np.nan)
        for column, index in enumerate(members):
            taus[:, column] = weighted_kendall_tau(x[index], y[index], weights[:, index])
        m[axis] = _mean_defined(taus)
        defined[axis] = (~np.isnan(taus)).sum(axis=1)
    per_axis = np.stack(list(m.values()), axis=1) if m else np.full((len(weights), 0), np.nan)
    return m, _mean_defined(per_axis), defined


def _scopes(runs: pd.DataFrame) -> list[tuple[str, np.ndarray]]:
    """(name, positions of its runs): each architecture's optimizer grid, then all pooled."""
    cells = runs.groupby(["arch", BASE], sort=True).indices
    return [(f"{arch}/{base}", index) for (arch, base), index in cells.items()] + [
        (POOLED, np.arange(len(runs)))
    ]


def generalization_table(
    runs: pd.DataFrame,
    axes: Sequence[str],
    metrics: Sequence[str] = METRICS,
    targets: Sequence[str] = TARGETS,
    *,
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """m_i per axis and Ψ (``axis`` ``"psi"``), with percentile bootstrap intervals, for every
    metric and target; per architecture and optimizer (scope ``"<arch>/<optimizer>"``) and
    pooled over them. ``runs`` is :func:`grid_runs`' table."""
    check_bootstrap(n_boot, confidence)
    unknown = sorted((set(metrics) | set(targets) | set(axes)) - set(runs.columns))
    if unknown:
        raise ValueError(f"unknown columns {unknown}; the runs table has: {sorted(runs.columns)}")
    strata = runs[GRID_KEYS].astype(str).agg("/".join, axis=1)
    resampled = cluster_bootstrap_weights(
        range(len(runs)), strata, n_boot, np.random.default_rng(seed)
    )
    rows = []
    for scope, members in _scopes(runs):
        for metric, target in itertools.product(metrics, targets):
            kept = members[runs.iloc[members][[metric, target]].notna().all(axis=1).to_numpy()]
            cell = {"scope": scope, "metric": metric, "target": target}
            kept_runs = runs.iloc[kept].reset_index(drop=True)
            for row in _axis_rows(kept_runs, metric, target, axes, resampled[:, kept], confidence):
                rows.append(cell | row)
    return pd.DataFrame(rows, columns=COLUMNS)


def _axis_rows(
    runs: pd.DataFrame,
    metric: str,
    target: str,
    axes: Sequence[str],
    resampled: np.ndarray,
    confidence: float,
) -> list[dict]:
    """m of each axis and Ψ of ``metric`` with ``target`` over ``runs``, with the percentile
    intervals of the resampled multiplicities ``resampled`` (a row per resample)."""
    groups = axis_groups(runs, axes)
    x, y = runs[metric].to_numpy(), runs[target].to_numpy()
    m, psi, defined = granulated_kendall(x, y, groups, np.ones((1, len(runs))))
    m_boot, psi_boot, _ = granulated_kendall(x, y, groups, resampled)
    m[PSI], m_boot[PSI], defined[PSI] = psi, psi_boot, sum(defined.values())
    rows = []
    for axis in [*axes, PSI]:
        low, high, used = percentile_interval(m_boot[axis], confidence)
        rows.append(
            {
                "axis": axis,
                "tau": float(m[axis][0]),
                "ci_low": low,
                "ci_high": high,
                "confidence": confidence,
                "n_groups": int(np.sum(defined[axis])),
                "n_runs": len(runs),
                "n_boot": used,
            }
        )
    return rows


def ranked_metrics(table: pd.DataFrame, target: str) -> list[str]:
    """The metrics by decreasing |Ψ| (pooled) with ``target``; undefined Ψ last."""
    psi = table[(table["scope"] == POOLED) & (table["axis"] == PSI) & (table["target"] == target)]
    strength = psi.set_index("metric")["tau"].abs().fillna(-1.0)
    order = list(dict.fromkeys(table["metric"]))
    return sorted(order, key=lambda metric: -strength[metric])


def to_markdown(table: pd.DataFrame, digits: int = 2) -> str:
    """Per target, a row per metric (ranked by |Ψ|): m_i of each axis and Ψ with its interval,
    pooled; then Ψ with its interval per architecture and optimizer."""

    def number(value: float) -> str:
        return "n/a" if math.isnan(value) else f"{value:.{digits}f}"

    def with_interval(row: pd.Series) -> str:
        if math.isnan(row["tau"]):
            return "n/a"
        return f"{number(row['tau'])} [{number(row['ci_low'])}, {number(row['ci_high'])}]"

    level = round(100 * float(table["confidence"].iloc[0]))
    axes = [axis for axis in dict.fromkeys(table["axis"]) if axis != PSI]
    scopes = [scope for scope in dict.fromkeys(table["scope"]) if scope != POOLED]
    sections = [
        "Granulated Kendall τ (Jiang et al. 2020): m_<axis> is the mean τ-b over the groups of "
        "runs that differ in that axis only, Ψ the mean over the axes; "
        f"{level} % percentile bootstrap intervals over runs. Metrics ranked by |Ψ|."
    ]
    for target in dict.fromkeys(table["target"]):
        rows = table[table["target"] == target]
        pooled = rows[rows["scope"] == POOLED]
        lines = []
        for metric in ranked_metrics(table, target):
            cells = pooled[pooled["metric"] == metric].set_index("axis")
            per_scope = rows[(rows["metric"] == metric) & (rows["axis"] == PSI)]
            per_scope = per_scope.set_index("scope")
            lines.append(
                {"metric": metric}
                | {f"m_{axis}": number(cells.loc[axis, "tau"]) for axis in axes}
                | {"Ψ (pooled)": with_interval(cells.loc[PSI])}
                | {f"Ψ ({scope})": with_interval(per_scope.loc[scope]) for scope in scopes}
            )
        sections.append(
            f"With the {target.replace('_', ' ')} ({int(pooled['n_runs'].max())} runs):\n\n"
            + pd.DataFrame(lines).to_markdown(index=False, disable_numparse=True)
        )
    return "\n\n".join(sections) + "\n"
