"""The Lion ablation (PAPER.md §4, experiment ``lion_ablation``): statistics over seeds, its
tables and its figures.

Runs of one architecture and seed share their initial weights and their data order, whatever
the optimizer, so two optimizers' runs of the same seed are a pair. Every interval is a
two-sided Student-t interval over seeds (:func:`infoopt.report.paired.t_interval`); every
comparison with Lion is paired by seed (:func:`paired_comparison`), with two p-values:

- ``p_ttest``: the paired t-test (the p-value of scipy's ``ttest_rel``), the test that matches
  the reported t-interval of the mean difference (p < 0.05 exactly when the 95 % interval
  excludes 0). It assumes the per-seed differences are roughly normal.
- ``p_sign_flip``: the exact sign-flip permutation test of the mean difference, which assumes
  only that the difference is symmetric about 0 under the null. It is exact but coarse: with
  n pairs its smallest possible value is 2/2^n (0.25 at 3 seeds, given in ``p_sign_flip_min``),
  so at few seeds it can never reach 0.05, and the t-test is the one to read.

Runs that diverged are left out of every statistic and counted (``n_diverged``); a pair needs
both runs to have finished.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from infoopt.atomic import write_table, write_text
from infoopt.report.figures import THEME, label, panels
from infoopt.report.paired import (
    CONFIDENCE,
    paired_differences,
    paired_t_pvalue,
    sign_flip_min_pvalue,
    sign_flip_pvalue,
    t_interval,
)
from infoopt.report.tables import metric_rows

HESSIAN_METRICS = ("entropy_gap", "abs_trace_sum", "top_eigenvalue")
# Markdown headings of the Hessian metrics (the figures' axis labels use TeX).
METRIC_NAMES = {
    "entropy_gap": "entropy gap, mean over blocks (nats)",
    "abs_trace_sum": "sharpness Σ_b |tr H_bb| (nats)",
    "top_eigenvalue": "top Hessian eigenvalue λ_max (nats)",
}
KAPPA_LABEL = "temperature κ (dimensionless, log scale)"


# --------------------------------------------------------------------------------- tables


def final_rows(long: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The rows of ``metric`` at each run's last checkpoint (a summary table: training or
    Hessian)."""
    rows = metric_rows(long, metric)
    return rows[rows["progress"] == rows["progress"].max()]


def _ordered(table: pd.DataFrame, order: Sequence[str], then: Sequence[str] = ()) -> pd.DataFrame:
    """``table`` sorted by arch (by name), optimizer (in ``order``, others after them by name),
    then the columns ``then``."""
    known = list(order) + sorted(set(table["optimizer"]) - set(order))
    rank = {name: i for i, name in enumerate(known)}
    return table.sort_values(
        ["arch", "optimizer", *then], key=lambda c: c.map(rank) if c.name == "optimizer" else c
    ).reset_index(drop=True)


def summary_table(
    rows: pd.DataFrame, order: Sequence[str] = (), confidence: float = CONFIDENCE
) -> pd.DataFrame:
    """Per (arch, optimizer): ``n_seeds`` finished runs, ``n_diverged``, ``mean``, ``std`` and
    the t-interval ``ci_low``–``ci_high`` of ``value`` over the finished runs' seeds."""
    records = []
    for (arch, optimizer), group in rows.groupby(["arch", "optimizer"], sort=False):
        ok = group[(group["status"] == "ok") & np.isfinite(group["value"])]
        mean, low, high = t_interval(ok["value"], confidence)
        records.append(
            {
                "arch": arch,
                "optimizer": optimizer,
                "n_seeds": len(ok),
                "n_diverged": int((group["status"] != "ok").sum()),
                "mean": mean,
                "std": float(ok["value"].std(ddof=1)) if len(ok) > 1 else math.nan,
                "ci_low": low,
                "ci_high": high,
            }
        )
    return _ordered(pd.DataFrame(records), order)


def run_hparams(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (arch, optimizer): ``algorithm`` and ``lr`` (the selected one, where a sweep chose
    it), from ``runs.parquet``; an error if the seeds of one disagree."""
    rows = runs.assign(lr=[json.loads(h).get("lr", math.nan) for h in runs["hparams"]])
    unique = rows.groupby(["arch", "optimizer"])[["algorithm", "lr"]].nunique(dropna=False)
    mixed = unique[(unique > 1).any(axis=1)]
    if not mixed.empty:
        raise ValueError(f"seeds of one optimizer ran with different lrs: {list(mixed.index)}")
    return rows.groupby(["arch", "optimizer"], as_index=False)[["algorithm", "lr"]].first()


def accuracy_table(
    training: pd.DataFrame,
    runs: pd.DataFrame,
    order: Sequence[str] = (),
    confidence: float = CONFIDENCE,
) -> pd.DataFrame:
    """Final test accuracy (%) per (arch, optimizer): :func:`summary_table` plus each
    optimizer's algorithm and lr."""
    summary = summary_table(final_rows(training, "test_accuracy"), order, confidence)
    table = summary.merge(run_hparams(runs), on=["arch", "optimizer"], how="left")
    columns = ["arch", "optimizer", "algorithm", "lr"]
    return table[columns + [c for c in summary.columns if c not in columns]]


def paired_comparison(
    rows: pd.DataFrame,
    reference: str,
    order: Sequence[str] = (),
    confidence: float = CONFIDENCE,
) -> pd.DataFrame:
    """Per arch and optimizer other than ``reference``: the per-seed differences
    ``value − value(reference)`` over the seeds where both runs finished: ``n_pairs``, mean
    ``difference``, its t-interval, ``p_ttest``, ``p_sign_flip`` and ``p_sign_flip_min``."""
    if reference not in set(rows["optimizer"]):
        raise ValueError(
            f"reference optimizer {reference!r} has no runs (have: "
            f"{', '.join(sorted(rows['optimizer'].unique()))})"
        )
    records = []
    for arch in sorted(rows["arch"].unique()):
        runs = rows[rows["arch"] == arch]
        for optimizer in runs["optimizer"].unique():
            if optimizer == reference:
                continue
            d = paired_differences(runs, optimizer, reference).to_numpy(dtype=float)
            mean, low, high = t_interval(d, confidence)
            records.append(
                {
                    "arch": arch,
                    "optimizer": optimizer,
                    "reference": reference,
                    "n_pairs": len(d),
                    "difference": mean,
                    "ci_low": low,
                    "ci_high": high,
                    "p_ttest": paired_t_pvalue(d),
                    "p_sign_flip": sign_flip_pvalue(d),
                    "p_sign_flip_min": sign_flip_min_pvalue(len(d)),
                }
            )
    return _ordered(pd.DataFrame(records), order)


def hessian_table(
    hessian: pd.DataFrame,
    order: Sequence[str] = (),
    metrics: Sequence[str] = HESSIAN_METRICS,
    confidence: float = CONFIDENCE,
) -> pd.DataFrame:
    """The final checkpoint's Hessian metrics per (metric, arch, optimizer), as
    :func:`summary_table`."""
    tables = [
        summary_table(final_rows(hessian, metric), order, confidence).assign(metric=metric)
        for metric in metrics
    ]
    table = pd.concat(tables, ignore_index=True)
    return table[["metric"] + [c for c in table.columns if c != "metric"]]


def lr_sweep_table(selections: Iterable[dict], order: Sequence[str] = ()) -> pd.DataFrame:
    """Every candidate of every sweep (``selected.json`` contents): its validation accuracy
    and loss, and whether it was ``selected`` (and lies ``at_edge`` of the grid)."""
    records = [
        {
            "arch": selection["arch"],
            "optimizer": selection["optimizer"],
            "lr": candidate["lr"],
            "status": candidate["status"],
            "val_accuracy": candidate["val_accuracy"],
            "val_loss": candidate["val_loss"],
            "selected": candidate["lr"] == selection["hparams"]["lr"],
            "at_edge": selection["at_edge"],
        }
        for selection in selections
        for candidate in selection["candidates"]
    ]
    if not records:
        raise ValueError("no sweep selections")
    return _ordered(pd.DataFrame(records), order, then=["lr"])


# ------------------------------------------------------------------------------- Markdown


def _interval(mean: float, low: float, high: float, digits: int) -> str:
    if not math.isfinite(mean):
        return "—"
    if not math.isfinite(low):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {(high - low) / 2:.{digits}f}"


def summary_markdown(table: pd.DataFrame, title: str, digits: int = 2) -> str:
    """A row per optimizer, a column per architecture: ``mean ± half-width (n)``."""

    def cell(r: pd.Series) -> str:
        diverged = f", {r['n_diverged']} diverged" if r["n_diverged"] else ""
        interval = _interval(r["mean"], r["ci_low"], r["ci_high"], digits)
        return f"{interval} (n={r['n_seeds']}{diverged})"

    cells = table.assign(cell=[cell(r) for _, r in table.iterrows()])
    order = list(dict.fromkeys(table["optimizer"]))
    wide = cells.pivot(index="optimizer", columns="arch", values="cell").reindex(order)
    return f"{title}\n\n{_markdown(wide.reset_index())}\n"


def _markdown(table: pd.DataFrame) -> str:
    """A Markdown table of preformatted cells (numbers are not re-parsed and re-rounded)."""
    return table.astype(str).to_markdown(index=False, disable_numparse=True)


def accuracy_markdown(table: pd.DataFrame, digits: int = 2) -> str:
    level = round(100 * CONFIDENCE)
    title = (
        f"Final test accuracy (%): mean ± half-width of the {level} % t-interval over seeds "
        "(n: finished seeds)"
    )
    lrs = table.pivot(index="optimizer", columns="arch", values="lr")
    lrs = lrs.reindex(list(dict.fromkeys(table["optimizer"])))
    lrs = lrs.map(lambda v: f"{v:.3g}").reset_index()
    return f"{summary_markdown(table, title, digits)}\nLearning rates used:\n\n{_markdown(lrs)}\n"


def paired_markdown(table: pd.DataFrame, digits: int = 2, unit: str = "% points") -> str:
    level = round(100 * CONFIDENCE)
    reference = table["reference"].iloc[0] if len(table) else "the reference"
    rows = [
        {
            "arch": r["arch"],
            "optimizer": r["optimizer"],
            f"difference ({unit}) ± {level} % CI": _interval(
                r["difference"], r["ci_low"], r["ci_high"], digits
            ),
            "pairs": r["n_pairs"],
            "p (paired t)": f"{r['p_ttest']:.3g}",
            "p (sign flip)": f"{r['p_sign_flip']:.3g} (min {r['p_sign_flip_min']:.3g})",
        }
        for _, r in table.iterrows()
    ]
    title = (
        f"Paired per-seed difference against {reference} (same seed: same initial weights and "
        "data order); p-values two-sided"
    )
    return f"{title}\n\n{_markdown(pd.DataFrame(rows))}\n"


def hessian_markdown(table: pd.DataFrame, digits: int = 3) -> str:
    level = round(100 * CONFIDENCE)
    parts = [
        summary_markdown(
            table[table["metric"] == metric],
            f"{METRIC_NAMES.get(metric, metric)} at the final checkpoint: mean ± half-width of "
            f"the {level} % t-interval over seeds",
            digits,
        )
        for metric in dict.fromkeys(table["metric"])
    ]
    return "\n".join(parts)


def lr_sweep_markdown(table: pd.DataFrame) -> str:
    shown = pd.DataFrame(
        {
            "arch": table["arch"],
            "optimizer": table["optimizer"],
            "lr": table["lr"].map(lambda v: f"{v:.3g}"),
            "status": table["status"],
            "validation accuracy (%)": table["val_accuracy"].map(lambda v: f"{v:.2f}"),
            "validation loss (nats)": table["val_loss"].map(lambda v: f"{v:.3f}"),
            "selected": np.where(
                table["selected"], np.where(table["at_edge"], "yes (edge of the grid)", "yes"), ""
            ),
        }
    )
    title = (
        "Learning-rate sweep: final accuracy and loss on the held-out part of the training set, "
        "one run per candidate"
    )
    return f"{title}\n\n{_markdown(shown)}\n"


def write_outputs(table: pd.DataFrame, markdown: str, csv_path: str, md_path: str) -> None:
    write_table(table, csv_path)
    write_text(markdown, md_path)


# -------------------------------------------------------------------------------- figures


def _colors(order: Sequence[str]) -> dict[str, tuple]:
    return dict(zip(order, sns.color_palette("colorblind", len(order)), strict=True))


def curve_table(
    history: pd.DataFrame, metric: str = "test_accuracy", confidence: float = CONFIDENCE
) -> pd.DataFrame:
    """Per (arch, optimizer, epoch): ``n`` seeds with a finite ``metric`` and its t-interval."""
    rows = history.dropna(subset=[metric])
    records = []
    for (arch, optimizer, epoch), group in rows.groupby(["arch", "optimizer", "epoch"]):
        mean, low, high = t_interval(group[metric], confidence)
        records.append(
            {
                "arch": arch,
                "optimizer": optimizer,
                "epoch": epoch,
                "n": len(group),
                "mean": mean,
                "ci_low": low,
                "ci_high": high,
            }
        )
    return pd.DataFrame(records)


def curves_figure(history: pd.DataFrame, order: Sequence[str]) -> Figure:
    """Test accuracy after each epoch: a panel per architecture, a line per optimizer (mean over
    seeds) and its t-interval band."""
    curves = curve_table(history)
    archs = sorted(curves["arch"].unique())
    colors = _colors(list(order))
    level = round(100 * CONFIDENCE)
    with sns.axes_style(THEME["style"]), sns.plotting_context(THEME["context"]):
        fig, (axes,) = panels(1, len(archs), (4.6, 3.6))
        for ax, arch in zip(axes, archs, strict=True):
            for optimizer, color in colors.items():
                line = curves[(curves["arch"] == arch) & (curves["optimizer"] == optimizer)]
                if line.empty:
                    continue
                sns.lineplot(data=line, x="epoch", y="mean", color=color, label=optimizer, ax=ax)
                # An accuracy lies in [0, 100] %, its t-interval need not: the band is clipped.
                band = line[["ci_low", "ci_high"]].clip(0, 100)
                ax.fill_between(
                    line["epoch"], band["ci_low"], band["ci_high"], color=color, alpha=0.2
                )
            ax.set(title=arch, xlabel="epoch", ylabel=label("test_accuracy"))
            ax.legend(title="optimizer", fontsize="small", title_fontsize="small")
        fig.suptitle(
            f"Test accuracy during training\n(mean over seeds; band: {level} % t-interval)",
            fontsize="medium",
        )
    return fig


def kappas(runs: pd.DataFrame, algorithm: str = "lion_tanh") -> pd.Series:
    """κ of each optimizer of ``algorithm`` in ``runs.parquet``, indexed by optimizer, as its
    runs recorded it. The configuration check writes every default into a run's hparams, so
    a run of ``algorithm`` that records no κ (a run.json from before it did) is an error that
    names the run: no default is guessed for it."""
    rows = runs[runs["algorithm"] == algorithm]
    recorded = [json.loads(h).get("kappa") for h in rows["hparams"]]
    for (_, run), kappa in zip(rows.iterrows(), recorded, strict=True):
        if kappa is None:
            raise ValueError(
                f"run {run['arch']}/{run['optimizer']}/seed{run['seed']} of {algorithm} records "
                "no kappa in its hparams; rerun it to record its hyper-parameters in full"
            )
    first = rows.assign(kappa=recorded).drop_duplicates("optimizer")
    return pd.Series(
        first["kappa"].to_numpy(), index=first["optimizer"].to_numpy(), name="kappa", dtype=float
    )


def kappa_figure(accuracy: pd.DataFrame, runs: pd.DataFrame, reference: str) -> Figure:
    """Final test accuracy of Lion-tanh against κ (log axis; points: mean, bars: t-interval),
    with ``reference`` (Lion, the κ → ∞ limit) as a horizontal line and band. ``accuracy`` is
    :func:`accuracy_table`'s."""
    kappa = kappas(runs)
    if kappa.empty:
        raise ValueError("no lion_tanh runs: nothing to draw against κ")
    points = accuracy.merge(kappa.rename_axis("optimizer").reset_index(), on="optimizer")
    archs = sorted(accuracy["arch"].unique())
    level = round(100 * CONFIDENCE)
    tanh_color, lion_color = sns.color_palette("colorblind", 2)
    with sns.axes_style(THEME["style"]), sns.plotting_context(THEME["context"]):
        fig, (axes,) = panels(1, len(archs), (4.4, 3.6))
        for ax, arch in zip(axes, archs, strict=True):
            line = points[points["arch"] == arch].sort_values("kappa")
            ax.errorbar(
                line["kappa"],
                line["mean"],
                yerr=[line["mean"] - line["ci_low"], line["ci_high"] - line["mean"]],
                fmt="o-",
                color=tanh_color,
                capsize=3,
                label="Lion-tanh",
                gid="lion_tanh",
            )
            limit = accuracy[(accuracy["arch"] == arch) & (accuracy["optimizer"] == reference)]
            if not limit.empty:
                row = limit.iloc[0]
                ax.axhline(row["mean"], color=lion_color, label=f"{reference} (κ → ∞)", gid="lion")
                if math.isfinite(row["ci_low"]):
                    low, high = np.clip([row["ci_low"], row["ci_high"]], 0, 100)
                    ax.axhspan(low, high, color=lion_color, alpha=0.15)
            ax.set_xscale("log")
            ax.set_xticks(line["kappa"], [f"{k:g}" for k in line["kappa"]])
            ax.minorticks_off()
            ax.set(title=arch, xlabel=KAPPA_LABEL, ylabel="final " + label("test_accuracy"))
            ax.legend(fontsize="small")
        fig.suptitle(
            f"Lion-tanh against its temperature κ\n(mean over seeds, {level} % t-intervals;"
            " band clipped to 0–100 %)",
            fontsize="medium",
        )
    return fig


def hessian_figure(
    hessian: pd.DataFrame, order: Sequence[str], metrics: Sequence[str] = HESSIAN_METRICS[:2]
) -> Figure:
    """The final checkpoint's ``metrics`` per optimizer: a panel per (metric, arch), each
    seed a dot, the mean with its t-interval as a bar."""
    archs = sorted(hessian["arch"].unique())
    colors = _colors(list(order))
    level = round(100 * CONFIDENCE)
    with sns.axes_style(THEME["style"]), sns.plotting_context(THEME["context"]):
        fig = Figure(figsize=(4.4 * len(archs), 3.4 * len(metrics)), layout="constrained")
        axes = fig.subplots(len(metrics), len(archs), squeeze=False)
        for row, metric in zip(axes, metrics, strict=True):
            final = final_rows(hessian, metric)
            final = final[(final["status"] == "ok") & np.isfinite(final["value"])]
            summary = summary_table(final, order).set_index(["arch", "optimizer"])
            for ax, arch in zip(row, archs, strict=True):
                shown = [o for o in colors if (arch, o) in summary.index]
                seeds = final[final["arch"] == arch]
                sns.stripplot(
                    data=seeds,
                    x="optimizer",
                    y="value",
                    hue="optimizer",
                    order=shown,
                    hue_order=shown,
                    palette=colors,
                    size=4,
                    alpha=0.6,
                    legend=False,
                    ax=ax,
                )
                for x, optimizer in enumerate(shown):
                    s = summary.loc[(arch, optimizer)]
                    bar = [[s["mean"] - s["ci_low"]], [s["ci_high"] - s["mean"]]]
                    ax.errorbar(
                        [x],
                        [s["mean"]],
                        yerr=bar if math.isfinite(s["ci_low"]) else None,
                        fmt="_",
                        markersize=14,
                        color="black",
                        capsize=4,
                    )
                values = seeds["value"].to_numpy()
                if metric != "entropy_gap" and len(values) and (values > 0).all():
                    ax.set_yscale("log")
                ax.set(title=arch, xlabel="optimizer", ylabel=label(metric))
                ax.tick_params(axis="x", labelrotation=30)
        fig.suptitle(
            f"Hessian metrics at the final checkpoint\n(dots: seeds; bars: mean and {level} % "
            "t-interval)",
            fontsize="medium",
        )
    return fig
