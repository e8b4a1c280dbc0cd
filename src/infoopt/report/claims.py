"""The orderings the paper's claim rests on (PAPER.md §1), and a rival explanation's, tested on
the per-seed values of a run.

Each claim orders two optimizers on one architecture and metric, as the paper finds them at
the end of training, or (Zhang et al. 2024's claim) two architectures on one metric, within
each optimizer. :func:`check_claims` tests it at every checkpoint with
:func:`infoopt.report.paired.compare_optimizers` (or ``compare_architectures``): the
differences a − b of runs paired by seed, their t-interval, the exact sign-flip test and a
verdict (reproduced, contradicted or inconclusive, with the reason) on the claim's direction.

The claims are about the end of training: the rows at the final checkpoint are the
**primary** family, whose p-values are Holm-adjusted across the claims (``p_adjusted``) and
whose verdicts need the adjusted p-value at the level too; the earlier checkpoints are
**exploratory** (``family``), each tested on its own and shown without verdict colours.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from infoopt.report.figures import THEME, label, panels
from infoopt.report.paired import (
    CONFIDENCE,
    assess,
    compare_architectures,
    compare_optimizers,
    holm,
    min_pairs,
)
from infoopt.report.tables import paper_values

# The checkpoint of the primary family: the claims are about the end of training.
FINAL = 1.0
FAMILIES = ("primary", "exploratory")


@dataclass(frozen=True)
class Claim:
    """An ordering of ``a`` against ``b`` (``expected``: ">" or "<") on ``metric``: of two
    optimizers on the architecture ``arch``, or, with ``between="arch"``, of two
    architectures within each optimizer (``arch`` then unused: None)."""

    statement: str
    metric: str
    arch: str | None
    expected: str
    a: str = "sgd"
    b: str = "adam"
    between: str = "optimizer"


CLAIMS = (
    Claim("SGD beats Adam on ResNet18", "test_accuracy", "resnet18", ">"),
    Claim("Adam beats SGD on the ViT", "test_accuracy", "vit", "<"),
    Claim("Adam is sharper than SGD on ResNet18", "abs_trace_sum", "resnet18", "<"),
    Claim("Adam is sharper than SGD on the ViT", "abs_trace_sum", "vit", "<"),
    Claim("the winner (SGD) has the smaller gap on ResNet18", "entropy_gap", "resnet18", "<"),
    Claim("the winner (Adam) has the smaller gap on the ViT", "entropy_gap", "vit", ">"),
    Claim(
        "the winner (SGD) has the smaller gap spread on ResNet18",
        "entropy_gap_deviation",
        "resnet18",
        "<",
    ),
    Claim(
        "the winner (Adam) has the smaller gap spread on the ViT",
        "entropy_gap_deviation",
        "vit",
        ">",
    ),
    # Zhang et al. 2024 (arXiv 2402.16788): a rival explanation of why the ViT needs Adam.
    Claim(
        "the ViT's blocks are more heterogeneous than ResNet18's",
        "block_heterogeneity",
        None,
        ">",
        a="vit",
        b="resnet18",
        between="arch",
    ),
)
# Exploratory rows carry no verdict colour: grey open markers.
EXPLORATORY_STYLE = {"color": "grey", "marker": "o", "markerfacecolor": "none"}
VERDICT_COLORS = dict(
    zip(
        ("reproduced", "contradicted", "inconclusive"),
        [sns.color_palette("colorblind")[i] for i in (2, 3, 7)],
        strict=True,
    )
)


def side_by_side(ours: pd.DataFrame) -> pd.DataFrame:
    """The paper's numbers beside ours (tables in the format of ``infoopt.report.tables``)."""
    keys = ["table", "metric", "arch", "optimizer", "progress"]
    paper = paper_values().rename(columns={"value": "paper"})
    mine = ours[keys + ["value", "std", "n_seeds"]].rename(columns={"value": "ours"})
    return paper.merge(mine, on=keys, how="outer").sort_values(keys, ignore_index=True)


def _claim_rows(long: pd.DataFrame, claim: Claim) -> pd.DataFrame:
    """The claim's comparison per checkpoint, in the columns ``arch, optimizer, a, b`` (the
    one of arch/optimizer that is fixed within a row is filled, the other NA)."""
    if claim.between == "arch":
        if not {claim.a, claim.b} <= set(long["arch"]) or claim.metric not in set(long["metric"]):
            return pd.DataFrame()
        result = compare_architectures(long, claim.metric, claim.a, claim.b, claim.expected)
        return result.rename(columns={"arch_a": "a", "arch_b": "b"}).assign(arch=pd.NA)
    if claim.arch not in set(long["arch"]):
        return pd.DataFrame()
    result = compare_optimizers(long, claim.metric, claim.a, claim.b, claim.expected)
    result = result[result["arch"] == claim.arch]
    return result.rename(columns={"optimizer_a": "a", "optimizer_b": "b"}).assign(optimizer=pd.NA)


def check_claims(long: pd.DataFrame) -> pd.DataFrame:
    """A row per claim and checkpoint (and optimizer, for a claim between architectures) in
    ``long`` (the training and Hessian summary tables, concatenated): the comparison of
    :func:`~infoopt.report.paired.compare_optimizers`, its ``expected`` ordering renamed
    ``paper_direction``, ``paper_difference`` (the paper's own a − b at that checkpoint, NaN
    where the paper has no value), ``family`` (primary at :data:`FINAL`, else exploratory) and
    ``p_adjusted`` (Holm across the primary family, NaN for exploratory rows); the primary
    rows' verdicts also need ``p_adjusted`` at the level. Claims without runs of their
    architectures (or their metric) are left out; a ValueError if that is every claim."""
    paper = paper_values().pivot_table(
        index=["metric", "arch", "progress"], columns="optimizer", values="value"
    )
    tables = []
    for claim in CLAIMS:
        result = _claim_rows(long, claim)
        if result.empty:
            continue
        if claim.between == "optimizer" and {claim.a, claim.b} <= set(paper.columns):
            difference = (paper[claim.a] - paper[claim.b]).rename("paper_difference")
            result = result.merge(
                difference.reset_index(), on=["metric", "arch", "progress"], how="left"
            )
        tables.append(result.assign(claim=claim.statement))
    if not tables:
        raise ValueError(
            f"no runs of the claims' architectures "
            f"{sorted({c.arch for c in CLAIMS if c.arch})} (have: {sorted(long['arch'].unique())})"
        )
    table = pd.concat(tables, ignore_index=True).rename(columns={"expected": "paper_direction"})
    table = table.assign(
        family=["primary" if p == FINAL else "exploratory" for p in table["progress"]],
        p_adjusted=math.nan,
    )
    primary = table["family"] == "primary"
    table.loc[primary, "p_adjusted"] = holm(table.loc[primary, "p_value"])
    # The exploratory rows keep their own tests; the primary ones need the family's as well.
    reassessed = assess(
        table[primary].rename(columns={"paper_direction": "expected"}),
        1 - CONFIDENCE,
        table.loc[primary, "p_adjusted"],
    ).rename(columns={"expected": "paper_direction"})
    table = pd.concat([table[~primary], reassessed]).sort_index()
    columns = [
        "claim",
        "family",
        "metric",
        "arch",
        "optimizer",
        "progress",
        "a",
        "b",
        "n_pairs",
        "mean_difference",
        "sd_difference",
        "ci_low",
        "ci_high",
        "p_value",
        "p_adjusted",
        "sign_flip_p",
        "paper_direction",
        "verdict",
        "reason",
        "pairs_needed",
        "pairs_needed_note",
        "paper_difference",
    ]
    return table.reindex(columns=columns)


def _number(value: float) -> str:
    return f"{value:.3g}" if math.isfinite(value) else "—"


def _difference(row: pd.Series) -> str:
    """``mean [low, high]``, the mean alone where there are no bounds."""
    text = _number(row["mean_difference"])
    if math.isfinite(row["ci_low"]):
        text += f" [{_number(row['ci_low'])}, {_number(row['ci_high'])}]"
    return text


def _subject(row: pd.Series) -> str:
    """What a row compares: ``a > b`` with the fixed architecture or optimizer."""
    fixed = row["arch"] if isinstance(row["arch"], str) else f"{row['optimizer']} runs"
    return f"{row['a']} {row['paper_direction']} {row['b']} ({fixed})"


def _verdict_cell(row: pd.Series) -> str:
    """The verdict with its reason; an exploratory row's marked as such."""
    text = row["verdict"] if pd.isna(row["reason"]) else f"{row['verdict']}: {row['reason']}"
    return text if row["family"] == "primary" else f"({text}; exploratory)"


def _pairs_needed_cell(row: pd.Series) -> str:
    if pd.notna(row["pairs_needed"]):
        return str(row["pairs_needed"])
    return "—" if row["pairs_needed_note"] == "decided" else str(row["pairs_needed_note"])


def claims_markdown(table: pd.DataFrame) -> str:
    """A row per claim and checkpoint of :func:`check_claims`' table, the primary family
    (final checkpoint) first."""
    level = round(100 * CONFIDENCE)
    alpha = f"{1 - CONFIDENCE:g}"
    ordered = table.sort_values(
        "family", key=lambda c: c.map(FAMILIES.index), kind="stable"
    ).reset_index(drop=True)
    shown = pd.DataFrame(
        {
            "claim": ordered["claim"],
            "checkpoint": [f"{100 * p:g}%" for p in ordered["progress"]],
            "ordering": ordered.apply(_subject, axis=1),
            "pairs": ordered["n_pairs"],
            f"a − b [{level} % CI]": ordered.apply(_difference, axis=1),
            "p (t)": ordered["p_value"].map(_number),
            "p (Holm)": ordered["p_adjusted"].map(_number),
            "p (sign flip)": ordered["sign_flip_p"].map(_number),
            "paper a − b": ordered["paper_difference"].map(_number),
            "verdict": ordered.apply(_verdict_cell, axis=1),
            "pairs needed": ordered.apply(_pairs_needed_cell, axis=1),
        }
    )
    title = (
        "The claims, per checkpoint: the mean difference a − b of runs paired by seed, its "
        f"{level} % t-interval, the paired t-test's p-value (Holm-adjusted across the primary "
        "family: the final checkpoint) and the exact sign-flip test's. A verdict (reproduced: "
        "the interval excludes 0 on the claim's side; contradicted: on the other) needs at "
        f"least {min_pairs()} pairs (below, the sign-flip test cannot reach α = {alpha}), "
        "differences that are not all equal, both tests and the Holm-adjusted p at α; "
        "otherwise inconclusive, with the reason. Rows before the final checkpoint are "
        "exploratory: in parentheses, each tested alone. Pairs needed: for 80 % power at "
        "the observed mean and spread."
    )
    return f"{title}\n\n{shown.to_markdown(index=False, disable_numparse=True)}\n"


def claims_figure(table: pd.DataFrame) -> Figure:
    """A panel per claim (and optimizer, for a claim between architectures) of
    :func:`check_claims`' table: the mean paired difference a − b at each checkpoint with its
    t-interval, the primary family's coloured by verdict, the exploratory rows as grey open
    markers (artist ``gid``: the verdict, or ``exploratory``)."""
    panel_of = table["claim"] + table["optimizer"].map(
        lambda o: f" ({o} runs)" if isinstance(o, str) else ""
    )
    names = list(dict.fromkeys(panel_of))
    progress = sorted(table["progress"].unique())
    position = {p: i for i, p in enumerate(progress)}
    columns = min(2, len(names))
    level = round(100 * CONFIDENCE)
    styles = {name: {"color": color, "marker": "o"} for name, color in VERDICT_COLORS.items()} | {
        "exploratory": EXPLORATORY_STYLE
    }
    with sns.axes_style(THEME["style"]), sns.plotting_context(THEME["context"]):
        fig, axes = panels(-(-len(names) // columns), columns, (5.0, 3.0))
        for ax in axes.flat[len(names) :]:
            ax.set_visible(False)
        for ax, name in zip(axes.flat, names, strict=False):
            rows = table[(panel_of == name).to_numpy()]
            first = rows.iloc[0]
            mark = rows["verdict"].where(rows["family"] == "primary", "exploratory")
            for gid, style in styles.items():
                points = rows[(mark == gid).to_numpy()].dropna(subset=["mean_difference"])
                if points.empty:
                    continue
                mean = points["mean_difference"].to_numpy()
                # No bar where the interval has no bounds (a single pair).
                ax.errorbar(
                    points["progress"].map(position),
                    mean,
                    yerr=[mean - points["ci_low"], points["ci_high"] - mean],
                    fmt=style["marker"],
                    color=style["color"],
                    markerfacecolor=style.get("markerfacecolor", style["color"]),
                    capsize=3,
                    gid=gid,
                )
            ax.axhline(0, color="grey", linewidth=0.8)
            ax.set_xticks(range(len(progress)), [f"{100 * p:g}" for p in progress])
            a, b = first["a"], first["b"]
            ax.set_title(f"{name}\n(claim: {a} {first['paper_direction']} {b})", fontsize="small")
            ax.set_ylabel(f"{a} − {b}\n{label(first['metric'])}", fontsize="small")
            ax.set_xlabel("checkpoint (% of optimizer steps)")
        fig.legend(
            handles=[
                Line2D(
                    [],
                    [],
                    color=style["color"],
                    markerfacecolor=style.get("markerfacecolor", style["color"]),
                    marker=style["marker"],
                    linestyle="none",
                    label=gid if gid in VERDICT_COLORS else "exploratory (no verdict)",
                )
                for gid, style in styles.items()
            ],
            title="final checkpoint: verdict",
            loc="outside right upper",
        )
        fig.suptitle(
            f"The claims: paired difference per checkpoint (mean over seeds, {level} % t-interval)",
            fontsize="medium",
        )
    return fig
