"""The orderings between optimizers that the paper's claim rests on (PAPER.md §1).

Each claim compares two optimizers on one architecture at the end of training: the paper
reports which is larger; a replication reproduces the claim when its means order the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from infoopt.report.tables import paper_values


@dataclass(frozen=True)
class Claim:
    statement: str
    metric: str
    arch: str
    smaller: str  # the optimizer the paper finds smaller on this metric
    larger: str


CLAIMS = (
    Claim("SGD beats Adam on ResNet18", "test_accuracy", "resnet18", "adam", "sgd"),
    Claim("Adam beats SGD on the ViT", "test_accuracy", "vit", "sgd", "adam"),
    Claim("Adam is sharper than SGD on ResNet18", "abs_trace_sum", "resnet18", "sgd", "adam"),
    Claim("Adam is sharper than SGD on the ViT", "abs_trace_sum", "vit", "sgd", "adam"),
    Claim(
        "the winner (SGD) has the smaller gap on ResNet18", "entropy_gap", "resnet18", "sgd", "adam"
    ),
    Claim("the winner (Adam) has the smaller gap on the ViT", "entropy_gap", "vit", "adam", "sgd"),
    Claim(
        "the winner (SGD) has the smaller gap spread on ResNet18",
        "entropy_gap_deviation",
        "resnet18",
        "sgd",
        "adam",
    ),
    Claim(
        "the winner (Adam) has the smaller gap spread on the ViT",
        "entropy_gap_deviation",
        "vit",
        "adam",
        "sgd",
    ),
)


def side_by_side(ours: pd.DataFrame) -> pd.DataFrame:
    """The paper's numbers beside ours (tables in the format of ``infoopt.report.tables``)."""
    keys = ["table", "metric", "arch", "optimizer", "progress"]
    paper = paper_values().rename(columns={"value": "paper"})
    mine = ours[keys + ["value", "std", "n_seeds"]].rename(columns={"value": "ours"})
    return paper.merge(mine, on=keys, how="outer").sort_values(keys, ignore_index=True)


def check_claims(ours: pd.DataFrame) -> pd.DataFrame:
    """One row per claim: the paper's and our final values, and whether our ordering agrees
    (None where we lack a value, e.g. every seed of a run diverged)."""
    final_paper = paper_values().query("progress == 1.0").set_index(["metric", "arch", "optimizer"])
    final_ours = ours[ours["progress"] == 1.0].set_index(["metric", "arch", "optimizer"])
    rows = []
    for claim in CLAIMS:
        row = {"claim": claim.statement, "metric": claim.metric, "arch": claim.arch}
        for source, table in (("paper", final_paper), ("ours", final_ours)):
            for role in ("smaller", "larger"):
                key = (claim.metric, claim.arch, getattr(claim, role))
                value = table["value"].get(key, float("nan"))
                row[f"{source}_{role}"] = value
        row["smaller_optimizer"], row["larger_optimizer"] = claim.smaller, claim.larger
        known = pd.notna(row["ours_smaller"]) and pd.notna(row["ours_larger"])
        row["reproduced"] = bool(row["ours_smaller"] < row["ours_larger"]) if known else None
        rows.append(row)
    return pd.DataFrame(rows)
