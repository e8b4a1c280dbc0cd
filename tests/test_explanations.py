"""Which explanation explains (infoopt.report.explanations): each candidate metric's paired
ordering against the winner's, on synthetic per-seed values whose orderings are known."""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
import pytest

from infoopt.report.explanations import (
    CANDIDATES,
    explanation_figure,
    explanation_markdown,
    explanation_table,
)

matplotlib.use("Agg")

# SGD − Adam at the final checkpoint: accuracy (SGD wins on resnet18, Adam on the ViT), then
# the metrics: the gap follows the winner, λ_max is the same on both, the block heterogeneity
# is larger for the winner (fails).
SHIFTS = {
    "resnet18": {"test_accuracy": 1.5, "entropy_gap": -0.5, "block_heterogeneity": 0.4},
    "vit": {"test_accuracy": -4.0, "entropy_gap": 0.5, "block_heterogeneity": -0.4},
}


def summary(seeds: int = 6) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    metrics = ("test_accuracy", "entropy_gap", "top_eigenvalue", "block_heterogeneity")
    for arch, shifts in SHIFTS.items():
        for seed in range(seeds):
            for progress in (0.0, 1.0):
                for metric in metrics:
                    base = rng.normal(scale=3.0)
                    for optimizer in ("sgd", "adam"):
                        value = base + rng.normal(scale=0.01)
                        if optimizer == "sgd" and progress == 1.0:
                            value += shifts.get(metric, 0.0)
                        if metric == "top_eigenvalue" and progress == 1.0:
                            value = base  # the same on both: no ordering
                        rows.append(
                            {
                                "arch": arch,
                                "optimizer": optimizer,
                                "seed": seed,
                                "progress": progress,
                                "status": "ok",
                                "metric": metric,
                                "value": value,
                            }
                        )
    return pd.DataFrame(rows)


def test_orderings_against_the_winner_and_psi():
    psi = pd.DataFrame(
        [
            {"scope": s, "metric": "entropy_gap", "target": t, "axis": a, "tau": tau}
            | {"ci_low": tau - 0.1, "ci_high": tau + 0.1}
            for s, t, a, tau in [
                ("pooled", "test_accuracy", "psi", 0.4),
                ("pooled", "test_accuracy", "lr", 0.9),
                ("pooled", "generalization_gap", "psi", -0.2),
                ("resnet18/sgd", "test_accuracy", "psi", 0.7),
            ]
        ]
    )
    table = explanation_table(summary(), psi)
    assert set(table["metric"]) == {"entropy_gap", "top_eigenvalue", "block_heterogeneity"}
    assert set(table["metric"]) < set(CANDIDATES)
    final = table[table["progress"] == 1.0].set_index(["arch", "metric"])
    assert final.loc[("resnet18", "entropy_gap"), "winner"] == "sgd"
    assert final.loc[("vit", "entropy_gap"), "winner"] == "adam"
    assert final.xs("entropy_gap", level="metric")["matches"].tolist() == [True, True]
    assert final.xs("block_heterogeneity", level="metric")["matches"].tolist() == [False, False]
    eigen = final.xs("top_eigenvalue", level="metric")
    assert eigen["matches"].isna().all() and eigen["smaller"].isna().all()
    assert (eigen["metric_difference"] == 0).all() and eigen["matches_mean"].isna().all()
    start = table[table["progress"] == 0.0]
    assert start["winner"].isna().all() and start["matches"].isna().all()
    assert (final.xs("entropy_gap", level="metric")["psi"] == 0.4).all()
    assert final.xs("entropy_gap", level="metric")["psi_ci_low"].tolist() == pytest.approx(
        [0.3] * 2
    )
    assert final.xs("block_heterogeneity", level="metric")["psi"].isna().all()
    assert explanation_table(summary())["psi"].isna().all(), "no grid study: no Ψ"


def test_markdown_and_figure_show_every_cell():
    table = explanation_table(summary())
    lines = [line for line in explanation_markdown(table).splitlines() if line.startswith("| ")]
    assert len(lines) == 1 + len(table)
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    row = next(c for c in cells if c[:3] == ["vit", "100%", "entropy_gap"])
    assert row[5] == "adam" and row[7] == "adam" and row[8] == "matches" and row[9] == "✓"
    fig = explanation_figure(table)
    images = [ax.get_images()[0] for ax in fig.axes if ax.get_images()]
    assert [image.get_gid() for image in images] == ["resnet18", "vit"]
    # Rows: the metrics in order; columns: 0 % and 100 %. States: matches 0, fails 1, undecided 2.
    np.testing.assert_array_equal(images[0].get_array(), [[2, 0], [2, 2], [2, 1]])


def test_no_candidate_metric_is_an_error():
    long = summary()
    with pytest.raises(ValueError, match="none of the candidate metrics"):
        explanation_table(long[long["metric"] == "test_accuracy"])
