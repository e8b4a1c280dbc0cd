"""The figures: metrics against training progress, block-gap distributions, accuracy against
each metric, and the intervals of the correlation and generalization studies. Each function
returns a matplotlib ``Figure`` made without pyplot (no GUI backend, no global figure
registry); the notebooks save it with :func:`save_figure`.

Paper values (CIFAR-10, the paper's scale) are drawn as star markers on the same axes, at the
same architecture, optimizer and checkpoint, with the artist's ``gid`` ``"paper:<optimizer>"``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from infoopt.atomic import atomic_path
from infoopt.report.correlation import METRICS, POOLED
from infoopt.report.generalization import PSI, ranked_metrics
from infoopt.report.tables import metric_rows

PROGRESS_LABEL = "training progress (% of optimizer steps)"
# Axis labels with units: the loss is the mean cross-entropy in nats and the weights are
# dimensionless, so Hessian traces and eigenvalues are in nats too.
LABELS = {
    "test_accuracy": "test accuracy (%)",
    "generalization_gap": "generalization gap, train − test (% points)",
    "positive_block_ratio": "positive-block ratio (fraction of blocks)",
    "abs_trace_sum": r"$\sum_b\,|\mathrm{tr}\,H_{bb}|$ (nats)",
    "entropy_gap": "mean entropy gap over blocks (nats)",
    "entropy_gap_deviation": "std of entropy gap over blocks (nats)",
    "top_eigenvalue": r"top Hessian eigenvalue $\lambda_{\max}$ (nats)",
    "hessian_trace": r"Hessian trace $\mathrm{tr}\,H$ (nats)",
    "gap": "entropy gap of a block (nats)",
    "block_heterogeneity": "block heterogeneity, mean JS distance (bits)",
    "gradient_heterogeneity": r"gradient heterogeneity, std of $\ln\|\nabla_b L\|$",
}
TITLES = {
    "test_accuracy": "Table 1: test accuracy",
    "positive_block_ratio": "Table 2: ratio of positive blocks",
    "abs_trace_sum": "Table 3: sharpness (sum of |block traces|)",
    "entropy_gap": "Table 4: entropy gap",
    "entropy_gap_deviation": "Table 5: deviation of the entropy gap",
    "top_eigenvalue": "Top Hessian eigenvalue",
    "hessian_trace": "Full Hessian trace",
    "block_heterogeneity": "Block heterogeneity (Zhang et al. 2024)",
    "gradient_heterogeneity": "Gradient heterogeneity (Tomihari & Sato 2025)",
}
# Spread over many orders of magnitude (and the paper's scale differs from a smoke run's).
LOG_SCALE = {"abs_trace_sum", "top_eigenvalue", "hessian_trace"}
PAPER_LABEL = "paper (CIFAR-10)"
PAPER_STYLE = {"marker": "*", "markersize": 13, "markeredgecolor": "black", "linestyle": "none"}
THEME = {"style": "whitegrid", "context": "paper"}


def label(name: str) -> str:
    """The axis label (with units) of a metric or column."""
    return LABELS.get(name, name.replace("_", " "))


def optimizer_colors(optimizers: Sequence[str]) -> dict[str, tuple]:
    """A colour per optimizer: the paper's two first, then the others by name, so the same
    optimizers get the same colours in every figure."""
    order = [name for name in ("sgd", "adam") if name in optimizers]
    order += sorted(set(optimizers) - set(order))
    return dict(zip(order, sns.color_palette("colorblind", len(order)), strict=True))


def _paper_marks(
    paper: pd.DataFrame | None, metric: str, arch: str, optimizer: str
) -> pd.DataFrame | None:
    """The paper's values of one line, or None where it has none."""
    if paper is None:
        return None
    marks = paper[
        (paper["metric"] == metric) & (paper["arch"] == arch) & (paper["optimizer"] == optimizer)
    ]
    return None if marks.empty else marks


def panels(n_rows: int, n_columns: int, size: tuple[float, float]) -> tuple[Figure, np.ndarray]:
    """A figure of ``n_rows × n_columns`` panels of ``size`` inches each."""
    fig = Figure(figsize=(size[0] * n_columns, size[1] * n_rows), layout="constrained")
    return fig, fig.subplots(n_rows, n_columns, squeeze=False)


def _scale(ax, axis: str, values: np.ndarray) -> None:
    """Log scale where every value is positive, else a symmetric log scale."""
    values = values[np.isfinite(values)]
    setter = ax.set_yscale if axis == "y" else ax.set_xscale
    if len(values) and (values > 0).all():
        setter("log")
    elif len(values) and (values != 0).any():
        setter("symlog", linthresh=float(np.abs(values[values != 0]).min()))


def _legend(ax, colors: dict[str, tuple], paper: bool) -> None:
    handles = [
        Line2D([], [], color=color, marker="o", label=name) for name, color in colors.items()
    ]
    if paper:
        handles.append(Line2D([], [], color="white", label=PAPER_LABEL, **PAPER_STYLE))
    ax.legend(handles=handles, title="optimizer", fontsize="small", title_fontsize="small")


def progress_figure(long: pd.DataFrame, metric: str, paper: pd.DataFrame | None = None) -> Figure:
    """``metric`` against training progress: a panel per architecture, a line per optimizer
    (mean over seeds) and a band from the lowest to the highest seed.

    ``long`` is a summary table (``training.parquet`` or ``hessian.parquet``); ``paper`` the
    paper's values (:func:`infoopt.report.tables.paper_values`) or None for no markers.
    """
    rows = metric_rows(long, metric, finished=True).assign(percent=lambda t: 100 * t["progress"])
    archs = sorted(rows["arch"].unique())
    colors = optimizer_colors(list(rows["optimizer"].unique()))
    with sns.axes_style(THEME["style"]), sns.plotting_context(THEME["context"]):
        fig, axes = panels(1, len(archs), (4.4, 3.6))
        drawn_paper = False
        for ax, arch in zip(axes[0], archs, strict=True):
            values = [rows.loc[rows["arch"] == arch, "value"].to_numpy()]
            for optimizer, color in colors.items():
                runs = rows[(rows["arch"] == arch) & (rows["optimizer"] == optimizer)]
                if runs.empty:
                    continue
                spread = runs.groupby("percent")["value"].agg(["mean", "min", "max"])
                ax.plot(spread.index, spread["mean"], marker="o", color=color, label=optimizer)
                ax.fill_between(spread.index, spread["min"], spread["max"], color=color, alpha=0.2)
                marks = _paper_marks(paper, metric, arch, optimizer)
                if marks is not None:
                    ax.plot(
                        100 * marks["progress"].to_numpy(),
                        marks["value"].to_numpy(),
                        color=color,
                        gid=f"paper:{optimizer}",
                        **PAPER_STYLE,
                    )
                    values.append(marks["value"].to_numpy())
                    drawn_paper = True
            if metric in LOG_SCALE:
                _scale(ax, "y", np.concatenate(values))
            ax.set(title=arch, xlabel=PROGRESS_LABEL, ylabel=label(metric), xlim=(-3, 103))
            ax.set_xticks(_spaced_ticks(sorted(rows["percent"].unique())))
        _legend(axes[0, 0], colors, drawn_paper)
        # Two lines, so that a single panel (one architecture) holds the title.
        fig.suptitle(TITLES.get(metric, label(metric)) + "\n(band: range over seeds)")
    return fig


def _spaced_ticks(checkpoints: Sequence[float], spacing: float = 5.0) -> list[float]:
    """Checkpoints as x ticks, leaving out any closer than ``spacing`` to the previous tick
    (0 % and 1 % would overlap)."""
    ticks: list[float] = []
    for value in checkpoints:
        if not ticks or value - ticks[-1] >= spacing:
            ticks.append(value)
    return ticks


def _box_positions(n_checkpoints: int, n_optimizers: int) -> np.ndarray:
    """x of each (checkpoint, optimizer) box: checkpoints at 0, 1, …, optimizers side by side."""
    width = 0.8 / n_optimizers
    offsets = (np.arange(n_optimizers) - (n_optimizers - 1) / 2) * width
    return np.arange(n_checkpoints)[:, None] + offsets[None, :]


def block_gap_figure(blocks: pd.DataFrame, paper: pd.DataFrame | None = None) -> Figure:
    """The distribution of the per-block entropy gap at each checkpoint (all blocks of all
    seeds): a panel per architecture, a box per optimizer, the mean (Table 4) as a white dot.

    ``blocks`` is ``hessian_blocks.parquet``; the paper's Table 4 means are drawn as stars.
    """
    rows = blocks[blocks["status"] == "ok"].dropna(subset=["gap"])
    if rows.empty:
        raise ValueError("no block has an entropy gap")
    archs = sorted(rows["arch"].unique())
    progress = sorted(rows["progress"].unique())
    colors = optimizer_colors(list(rows["optimizer"].unique()))
    positions = _box_positions(len(progress), len(colors))
    width = 0.8 / len(colors) * 0.85
    with sns.axes_style(THEME["style"]), sns.plotting_context(THEME["context"]):
        fig, axes = panels(1, len(archs), (5.2, 3.8))
        drawn_paper = False
        for ax, arch in zip(axes[0], archs, strict=True):
            for column, (optimizer, color) in enumerate(colors.items()):
                runs = rows[(rows["arch"] == arch) & (rows["optimizer"] == optimizer)]
                present = [i for i, p in enumerate(progress) if (runs["progress"] == p).any()]
                if not present:
                    continue
                parts = ax.boxplot(
                    [runs.loc[runs["progress"] == progress[i], "gap"].to_numpy() for i in present],
                    positions=positions[present, column],
                    widths=width,
                    patch_artist=True,
                    showmeans=True,
                    boxprops={"facecolor": (*color, 0.5), "edgecolor": color},
                    medianprops={"color": color},
                    whiskerprops={"color": color},
                    capprops={"color": color},
                    flierprops={"markeredgecolor": color, "markersize": 3},
                    meanprops={
                        "marker": "o",
                        "markerfacecolor": "white",
                        "markeredgecolor": "black",
                        "markersize": 4,
                    },
                )
                for line in parts["means"]:
                    line.set_gid(f"mean:{optimizer}")
                marks = _paper_marks(paper, "entropy_gap", arch, optimizer)
                index = {p: i for i, p in enumerate(progress)}
                if marks is not None and marks["progress"].isin(index).any():
                    marks = marks[marks["progress"].isin(index)]
                    ax.plot(
                        positions[marks["progress"].map(index).to_numpy(), column],
                        marks["value"].to_numpy(),
                        color=color,
                        gid=f"paper:{optimizer}",
                        **PAPER_STYLE,
                    )
                    drawn_paper = True
            ax.set_xticks(range(len(progress)), [f"{100 * p:g}" for p in progress])
            ax.set_xlim(-0.6, len(progress) - 0.4)
            ax.set(title=arch, xlabel="checkpoint (% of optimizer steps)", ylabel=label("gap"))
        _legend(axes[0, 0], colors, drawn_paper)
        fig.suptitle("Entropy gap per parameter block\n(white dot: mean over blocks, Table 4)")
    return fig


def accuracy_figure(
    points: pd.DataFrame, paper: pd.DataFrame | None = None, metrics: Sequence[str] = METRICS
) -> Figure:
    """Final test accuracy against each metric at the final checkpoint, one point per run
    (colour: optimizer, marker: architecture), a panel per metric.

    ``points`` is :func:`infoopt.report.correlation.checkpoint_points`' table; the paper's
    final values are stars labelled with their architecture.
    """
    final = points[points["progress"] == points["progress"].max()]
    colors = optimizer_colors(list(final["optimizer"].unique()))
    # The paper's final values, a row per (arch, optimizer) it reports and ours has.
    paper_final = (
        pd.DataFrame()
        if paper is None
        else paper[(paper["progress"] == 1.0) & paper["optimizer"].isin(colors)].pivot_table(
            index=["arch", "optimizer"], columns="metric", values="value"
        )
    )
    archs = sorted(final["arch"].unique())
    columns = min(3, len(metrics))
    n_rows = -(-len(metrics) // columns)
    with sns.axes_style(THEME["style"]), sns.plotting_context(THEME["context"]):
        fig, axes = panels(n_rows, columns, (4.0, 3.4))
        for ax in axes.flat[len(metrics) :]:
            ax.set_visible(False)
        for ax, metric in zip(axes.flat, metrics, strict=False):
            shown = final.dropna(subset=[metric, "test_accuracy"])
            sns.scatterplot(
                data=shown,
                x=metric,
                y="test_accuracy",
                hue="optimizer",
                hue_order=list(colors),
                palette=colors,
                style="arch",
                style_order=archs,
                s=45,
                ax=ax,
                legend=ax is axes.flat[0],
            )
            values = [shown[metric].to_numpy()]
            if {metric, "test_accuracy"} <= set(paper_final.columns):
                for (arch, optimizer), row in paper_final.iterrows():
                    ax.plot(
                        [row[metric]],
                        [row["test_accuracy"]],
                        color=colors[optimizer],
                        gid=f"paper:{optimizer}",
                        **PAPER_STYLE,
                    )
                    ax.annotate(
                        arch,
                        (row[metric], row["test_accuracy"]),
                        textcoords="offset points",
                        xytext=(5, 4),
                        fontsize="x-small",
                    )
                    values.append(np.array([row[metric]]))
            if metric in LOG_SCALE:
                _scale(ax, "x", np.concatenate(values))
            ax.set(xlabel=label(metric), ylabel=label("test_accuracy"))
        if not paper_final.empty:
            axes.flat[0].plot([], [], color="white", label=PAPER_LABEL, **PAPER_STYLE)
            axes.flat[0].legend(fontsize="x-small")
        fig.suptitle("Final test accuracy against each metric (a point per run)")
    return fig


def _interval_figure(
    table: pd.DataFrame, orders: Mapping[str, Sequence[str]], statistic: str, title: str
) -> Figure:
    """Each metric's ``tau`` with its interval (``ci_low``, ``ci_high``), a panel per target of
    ``orders`` with its metrics from the top in that order, a dot per scope side by side (each
    in a colour of its own, all runs pooled in black). The interval is drawn as a segment of its
    own (gid ``interval:<scope>``), not as error bars around the dot (gid ``tau:<scope>``): a
    bootstrap percentile interval need not contain the estimate."""
    scopes = list(dict.fromkeys(table["scope"]))
    parts = [scope for scope in scopes if scope != POOLED]
    colors = dict(zip(parts, sns.color_palette("deep", len(parts)), strict=True))
    colors[POOLED] = (0.0, 0.0, 0.0)
    offsets = (np.arange(len(colors)) - (len(colors) - 1) / 2) * 0.8 / len(colors)
    level = round(100 * float(table["confidence"].iloc[0]))
    # Every panel names its metrics unless all panels list them in one order.
    shared = len({tuple(metrics) for metrics in orders.values()}) == 1
    rows = max(len(metrics) for metrics in orders.values())
    with sns.axes_style(THEME["style"]), sns.plotting_context(THEME["context"]):
        fig, axes = panels(1, len(orders), (4.6, 0.35 * rows + 1.6))
        for ax, (target, metrics) in zip(axes[0], orders.items(), strict=True):
            for offset, (scope, color) in zip(offsets, colors.items(), strict=True):
                shown = table[(table["target"] == target) & (table["scope"] == scope)]
                shown = shown.set_index("metric").reindex(metrics)
                tau, low, high = (shown[c].to_numpy(float) for c in ("tau", "ci_low", "ci_high"))
                y = np.arange(len(metrics)) + offset
                ax.hlines(y, low, high, color=color, gid=f"interval:{scope}")
                ax.plot(tau, y, "o", color=color, label=scope, gid=f"tau:{scope}")
            ax.axvline(0, color="grey", linewidth=0.8)
            names = [m.replace("_", " ") for m in metrics]
            ax.set_yticks(range(len(metrics)), names if ax is axes[0, 0] or not shared else [])
            # Fixed limits, the first metric at the top, also where every value is undefined.
            ax.set_ylim(len(metrics) - 0.5, -0.5)
            ax.set(
                xlim=(-1.05, 1.05),
                xlabel=f"{statistic} with {label(target)}",
                title=f"{level} % CI, runs resampled",
            )
        fig.legend(
            *axes[0, 0].get_legend_handles_labels(), title="scope", loc="outside right upper"
        )
        fig.suptitle(title)
    return fig


def correlation_figure(table: pd.DataFrame) -> Figure:
    """Kendall's τ and its interval per metric (rows), a panel per target, a colour per scope
    (each architecture, and all pooled). ``table`` is
    :func:`infoopt.report.correlation.correlation_table`'s."""
    metrics = list(dict.fromkeys(table["metric"]))
    orders = {target: metrics for target in dict.fromkeys(table["target"])}
    return _interval_figure(
        table,
        orders,
        "Kendall's τ-b",
        "Rank correlation of each metric with generalization (all checkpoints)",
    )


def generalization_figure(table: pd.DataFrame) -> Figure:
    """The metrics ranked by the granulated Kendall Ψ (by |Ψ| pooled, the strongest at the top),
    with its interval, a panel per target, a colour per scope (each architecture's optimizer
    grid, and all pooled). ``table`` is
    :func:`infoopt.report.generalization.generalization_table`'s."""
    psi = table[table["axis"] == PSI]
    orders = {target: ranked_metrics(table, target) for target in dict.fromkeys(psi["target"])}
    return _interval_figure(
        psi,
        orders,
        "granulated Kendall Ψ",
        "Metrics ranked by how well they order the runs of a hyper-parameter grid",
    )


def save_figure(fig: Figure, pdf: str | os.PathLike, png: str | os.PathLike) -> None:
    """Write the figure as PDF and PNG (atomically; no creation date, so equal inputs give
    equal bytes)."""
    with atomic_path(pdf) as tmp:
        fig.savefig(tmp, format="pdf", metadata={"CreationDate": None})
    with atomic_path(png) as tmp:
        fig.savefig(tmp, format="png", dpi=150)
