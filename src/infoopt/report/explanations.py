"""Which explanation explains? The paper's metric beside its rivals, on the same runs.

The paper explains why SGD wins on ResNet18 and Adam on the ViT by the entropy gap: the
winner has the smaller gap (and gap spread), where sharpness fails. Its rivals are Hessian
block heterogeneity (Zhang et al. 2024) and gradient heterogeneity (Tomihari & Sato 2025);
λ_max and the trace are the usual sharpness. For each architecture and checkpoint,
:func:`explanation_table` asks of every candidate metric the paper's question: does the
optimizer with the smaller metric win? Both the winner (test accuracy) and the ordering of the
metric come from runs paired by seed (:func:`infoopt.report.paired.compare_optimizers`, the
same t-interval as the claims): ``matches`` is True or False only where both intervals exclude
0, NA otherwise (``matches_mean`` compares the mean differences' signs alone). Beside it, the
metric's granulated Ψ (Jiang et al. 2020) from a grid study's generalization table, where
there is one: whether the metric ranks runs by test accuracy across hyper-parameters.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from infoopt.report.correlation import POOLED
from infoopt.report.figures import THEME, label, panels
from infoopt.report.generalization import PSI
from infoopt.report.paired import compare_optimizers

# The candidate explanations, each read as "the optimizer with the smaller value wins".
CANDIDATES = (
    "entropy_gap",
    "entropy_gap_deviation",
    "top_eigenvalue",
    "abs_trace_sum",
    "hessian_trace",
    "block_heterogeneity",
    "gradient_heterogeneity",
)
TARGET = "test_accuracy"
COLUMNS = [
    "arch",
    "progress",
    "metric",
    "n_pairs",
    "accuracy_difference",
    "accuracy_ci_low",
    "accuracy_ci_high",
    "winner",
    "metric_difference",
    "metric_ci_low",
    "metric_ci_high",
    "smaller",
    "matches",
    "matches_mean",
    "psi",
    "psi_ci_low",
    "psi_ci_high",
]
# Cell states of the figure, in colour order.
STATES = ("matches", "fails", "undecided", "no data")


def _side(low: float, high: float, a: str, b: str, larger: bool) -> str | None:
    """The optimizer the interval [low, high] of a − b shows to be the larger (``larger``) or
    the smaller one; None where it contains 0 or has no bounds."""
    if low > 0:
        return a if larger else b
    if high < 0:
        return b if larger else a
    return None


def psi_of(generalization: pd.DataFrame | None, target: str = TARGET) -> pd.DataFrame:
    """Per metric: Ψ of the pooled scope on ``target`` with its interval, from a grid study's
    generalization table (NaN without one)."""
    columns = ["metric", "psi", "psi_ci_low", "psi_ci_high"]
    if generalization is None or generalization.empty:
        return pd.DataFrame(columns=columns)
    rows = generalization[
        (generalization["axis"] == PSI)
        & (generalization["scope"] == POOLED)
        & (generalization["target"] == target)
    ]
    return rows.rename(columns={"tau": "psi", "ci_low": "psi_ci_low", "ci_high": "psi_ci_high"})[
        columns
    ]


def explanation_table(
    long: pd.DataFrame,
    generalization: pd.DataFrame | None = None,
    a: str = "sgd",
    b: str = "adam",
    metrics: tuple[str, ...] = CANDIDATES,
) -> pd.DataFrame:
    """A row per architecture, checkpoint and candidate metric of ``long`` (the training and
    Hessian summary tables, concatenated): the paired difference a − b of the test accuracy
    and of the metric with their t-intervals, the ``winner`` and the optimizer with the
    ``smaller`` metric (None where undecided), whether they coincide, and the metric's Ψ.
    Metrics without values are left out."""
    accuracy = compare_optimizers(long, TARGET, a, b, ">")
    present = [m for m in metrics if m in set(long["metric"])]
    if not present:
        raise ValueError(f"none of the candidate metrics {list(metrics)} has values")
    tables = []
    for metric in present:
        ordering = compare_optimizers(long, metric, a, b, "<")
        joined = accuracy.merge(ordering, on=["arch", "progress"], suffixes=("_acc", ""))
        tables.append(
            pd.DataFrame(
                {
                    "arch": joined["arch"],
                    "progress": joined["progress"],
                    "metric": metric,
                    "n_pairs": joined["n_pairs"],
                    "accuracy_difference": joined["mean_difference_acc"],
                    "accuracy_ci_low": joined["ci_low_acc"],
                    "accuracy_ci_high": joined["ci_high_acc"],
                    "metric_difference": joined["mean_difference"],
                    "metric_ci_low": joined["ci_low"],
                    "metric_ci_high": joined["ci_high"],
                }
            )
        )
    table = pd.concat(tables, ignore_index=True)
    table["winner"] = [
        _side(lo, hi, a, b, larger=True)
        for lo, hi in zip(table["accuracy_ci_low"], table["accuracy_ci_high"], strict=True)
    ]
    table["smaller"] = [
        _side(lo, hi, a, b, larger=False)
        for lo, hi in zip(table["metric_ci_low"], table["metric_ci_high"], strict=True)
    ]
    decided = table["winner"].notna() & table["smaller"].notna()
    table["matches"] = pd.array(
        [
            w == s if d else pd.NA
            for w, s, d in zip(table["winner"], table["smaller"], decided, strict=True)
        ],
        dtype="boolean",
    )
    # The smaller metric wins: the signs of the two differences are opposite.
    signs = np.sign(table["accuracy_difference"]) * np.sign(table["metric_difference"])
    table["matches_mean"] = pd.array(
        [pd.NA if s == 0 or np.isnan(s) else bool(s < 0) for s in signs], dtype="boolean"
    )
    table = table.merge(psi_of(generalization), on="metric", how="left")
    return table.sort_values(["arch", "progress"], kind="stable", ignore_index=True)[COLUMNS]


def _state(row: pd.Series) -> str:
    if pd.isna(row["metric_difference"]) or pd.isna(row["accuracy_difference"]):
        return "no data"
    if pd.isna(row["matches"]):
        return "undecided"
    return "matches" if row["matches"] else "fails"


def _mark(row: pd.Series) -> str:
    """The point estimates' verdict, shown in every cell: ✓ or ✗ (the smaller metric's
    optimizer has the larger mean accuracy, or not), ? where a mean difference is 0."""
    if pd.isna(row["matches_mean"]):
        return "?"
    return "✓" if row["matches_mean"] else "✗"


def explanation_figure(table: pd.DataFrame) -> Figure:
    """A panel per architecture: a row per candidate metric (with its Ψ), a column per
    checkpoint; the cell's colour says whether the metric's paired ordering matches the
    winner's (both intervals exclude 0), fails, or is undecided; its mark is the point
    estimates' ✓/✗ (image ``gid``: the architecture)."""
    archs = sorted(table["arch"].unique())
    progress = sorted(table["progress"].unique())
    metrics = list(dict.fromkeys(table["metric"]))
    palette = sns.color_palette("colorblind")
    colors = ListedColormap([palette[2], palette[3], (0.85, 0.85, 0.85), (1.0, 1.0, 1.0)])
    with sns.axes_style("white"), sns.plotting_context(THEME["context"]):
        fig, axes = panels(1, len(archs), (0.9 * len(progress) + 3.5, 0.45 * len(metrics) + 1.5))
        for ax, arch in zip(axes.flat, archs, strict=True):
            rows = table[table["arch"] == arch].set_index(["metric", "progress"])
            states = np.full((len(metrics), len(progress)), STATES.index("no data"))
            for i, metric in enumerate(metrics):
                for j, p in enumerate(progress):
                    if (metric, p) in rows.index:
                        row = rows.loc[(metric, p)]
                        states[i, j] = STATES.index(_state(row))
                        ax.text(j, i, _mark(row), ha="center", va="center", fontsize="small")
            ax.imshow(states, cmap=colors, vmin=0, vmax=len(STATES) - 1, aspect="auto", gid=arch)
            psi = table.drop_duplicates("metric").set_index("metric")["psi"]
            ax.set_yticks(
                range(len(metrics)),
                [
                    f"{label(m)}" + (f"\nΨ = {psi[m]:.2f}" if np.isfinite(psi[m]) else "")
                    for m in metrics
                ],
                fontsize="x-small",
            )
            ax.set_xticks(range(len(progress)), [f"{100 * p:g}" for p in progress])
            ax.set_xlabel("checkpoint (% of optimizer steps)")
            ax.set_title(arch)
        handles = [
            sns.mpl.patches.Patch(facecolor=colors(i), edgecolor="grey", label=state)
            for i, state in enumerate(STATES)
        ]
        fig.legend(handles=handles, title="smaller metric wins?", loc="outside right upper")
        fig.suptitle(
            "Which explanation explains: does the optimizer with the smaller metric win? "
            "(colour: paired intervals; mark: means)",
            fontsize="medium",
        )
    return fig


def explanation_markdown(table: pd.DataFrame) -> str:
    """A row per architecture, checkpoint and metric of :func:`explanation_table`."""

    def interval(mean: float, low: float, high: float) -> str:
        text = f"{mean:.3g}" if np.isfinite(mean) else "—"
        return text + (f" [{low:.3g}, {high:.3g}]" if np.isfinite(low) else "")

    shown = pd.DataFrame(
        {
            "arch": table["arch"],
            "checkpoint": [f"{100 * p:g}%" for p in table["progress"]],
            "metric": table["metric"],
            "pairs": table["n_pairs"],
            "accuracy a − b": [
                interval(*r)
                for r in table[["accuracy_difference", "accuracy_ci_low", "accuracy_ci_high"]]
                .to_numpy()
                .tolist()
            ],
            "winner": table["winner"].fillna("undecided"),
            "metric a − b": [
                interval(*r)
                for r in table[["metric_difference", "metric_ci_low", "metric_ci_high"]]
                .to_numpy()
                .tolist()
            ],
            "smaller": table["smaller"].fillna("undecided"),
            "smaller wins": [_state(r) for _, r in table.iterrows()],
            "by the means": [_mark(r) for _, r in table.iterrows()],
            "Ψ (grid)": [f"{v:.2f}" if np.isfinite(v) else "—" for v in table["psi"]],
        }
    )
    title = (
        "Does the optimizer with the smaller metric win? Per architecture and checkpoint, the "
        "paired differences a − b (95 % t-intervals) of the test accuracy and of each candidate "
        "metric; 'matches' or 'fails' only where both intervals exclude 0. Ψ: the metric's "
        "granulated Kendall coefficient with the test accuracy over a grid study's runs (pooled)."
    )
    return f"{title}\n\n{shown.to_markdown(index=False, disable_numparse=True)}\n"
