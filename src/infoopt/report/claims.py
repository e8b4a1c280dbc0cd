"""The orderings between optimizers that the paper's claim rests on (PAPER.md §1), tested on
the per-seed values of a run.

Each claim orders two optimizers on one architecture and metric, as the paper finds them at
the end of training. :func:`check_claims` tests it at every checkpoint with
:func:`infoopt.report.paired.compare_optimizers`: the differences a − b of runs paired by seed,
their t-interval, and a verdict (reproduced, contradicted or inconclusive) on the paper's
direction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from infoopt.report.figures import THEME, label, panels
from infoopt.report.paired import CONFIDENCE, compare_optimizers
from infoopt.report.tables import paper_values


@dataclass(frozen=True)
class Claim:
    statement: str
    metric: str
    arch: str
    expected: str  # the paper's ordering of a against b at the end of training: ">" or "<"
    a: str = "sgd"
    b: str = "adam"


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
)
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


def check_claims(long: pd.DataFrame) -> pd.DataFrame:
    """A row per claim and checkpoint of its architecture in ``long`` (the training and Hessian
    summary tables, concatenated): :func:`~infoopt.report.paired.compare_optimizers` of the
    claim's optimizers on the per-seed values, its ``expected`` ordering renamed
    ``paper_direction``, and ``paper_difference``, the paper's own a − b at that checkpoint
    (NaN where the paper has no value). Claims on an architecture without runs are left out;
    a ValueError if that is every claim."""
    paper = paper_values().pivot_table(
        index=["metric", "arch", "progress"], columns="optimizer", values="value"
    )
    tables = []
    for claim in CLAIMS:
        result = compare_optimizers(long, claim.metric, claim.a, claim.b, claim.expected)
        paper_difference = (paper[claim.a] - paper[claim.b]).rename("paper_difference")
        tables.append(
            result[result["arch"] == claim.arch]
            .rename(columns={"expected": "paper_direction"})
            .merge(paper_difference.reset_index(), on=["metric", "arch", "progress"], how="left")
            .assign(claim=claim.statement)
        )
    table = pd.concat(tables, ignore_index=True)
    if table.empty:
        raise ValueError(
            f"no runs of the claims' architectures {sorted({c.arch for c in CLAIMS})} "
            f"(have: {sorted(long['arch'].unique())})"
        )
    return table[["claim", *table.columns.drop("claim")]]


def _number(value: float) -> str:
    return f"{value:.3g}" if math.isfinite(value) else "—"


def _difference(row: pd.Series) -> str:
    """``mean [low, high]``, the mean alone where there are no bounds."""
    text = _number(row["mean_difference"])
    if math.isfinite(row["ci_low"]):
        text += f" [{_number(row['ci_low'])}, {_number(row['ci_high'])}]"
    return text


def claims_markdown(table: pd.DataFrame) -> str:
    """A row per claim and checkpoint of :func:`check_claims`' table."""
    level = round(100 * CONFIDENCE)
    shown = pd.DataFrame(
        {
            "claim": table["claim"],
            "checkpoint": [f"{100 * p:g}%" for p in table["progress"]],
            "pairs": table["n_pairs"],
            f"a − b [{level} % CI]": table.apply(_difference, axis=1),
            "p": table["p_value"].map(_number),
            "paper": [
                f"{r['optimizer_a']} {r['paper_direction']} {r['optimizer_b']} "
                f"({_number(r['paper_difference'])})"
                for _, r in table.iterrows()
            ],
            "verdict": table["verdict"],
        }
    )
    title = (
        "The paper's claims, per checkpoint: the mean difference a − b of runs paired by seed, "
        f"its {level} % t-interval and the paired t-test's p-value; the paper's ordering (its "
        "own a − b). Verdict: reproduced where the interval excludes 0 on the paper's side, "
        "contradicted where it excludes 0 on the other, inconclusive where it contains 0 or "
        "there are fewer than 2 pairs."
    )
    return f"{title}\n\n{shown.to_markdown(index=False, disable_numparse=True)}\n"


def claims_figure(table: pd.DataFrame) -> Figure:
    """A panel per claim of :func:`check_claims`' table: the mean paired difference a − b at
    each checkpoint with its t-interval, coloured by verdict (artist ``gid``: the verdict)."""
    claims = list(dict.fromkeys(table["claim"]))
    progress = sorted(table["progress"].unique())
    position = {p: i for i, p in enumerate(progress)}
    columns = min(2, len(claims))
    level = round(100 * CONFIDENCE)
    with sns.axes_style(THEME["style"]), sns.plotting_context(THEME["context"]):
        fig, axes = panels(-(-len(claims) // columns), columns, (5.0, 3.0))
        for ax in axes.flat[len(claims) :]:
            ax.set_visible(False)
        for ax, claim in zip(axes.flat, claims, strict=False):
            rows = table[table["claim"] == claim]
            first = rows.iloc[0]
            for name, color in VERDICT_COLORS.items():
                points = rows[rows["verdict"] == name].dropna(subset=["mean_difference"])
                if points.empty:
                    continue
                mean = points["mean_difference"].to_numpy()
                # No bar where the interval has no bounds (a single pair).
                ax.errorbar(
                    points["progress"].map(position),
                    mean,
                    yerr=[mean - points["ci_low"], points["ci_high"] - mean],
                    fmt="o",
                    color=color,
                    capsize=3,
                    gid=name,
                )
            ax.axhline(0, color="grey", linewidth=0.8)
            ax.set_xticks(range(len(progress)), [f"{100 * p:g}" for p in progress])
            a, b = first["optimizer_a"], first["optimizer_b"]
            ax.set_title(f"{claim}\n(paper: {a} {first['paper_direction']} {b})", fontsize="small")
            ax.set_ylabel(f"{a} − {b}\n{label(first['metric'])}", fontsize="small")
            ax.set_xlabel("checkpoint (% of optimizer steps)")
        fig.legend(
            handles=[
                Line2D([], [], color=color, marker="o", linestyle="none", label=name)
                for name, color in VERDICT_COLORS.items()
            ],
            title="verdict",
            loc="outside right upper",
        )
        fig.suptitle(
            f"The paper's claims: paired difference per checkpoint (mean over seeds, {level} % "
            "t-interval)",
            fontsize="medium",
        )
    return fig
