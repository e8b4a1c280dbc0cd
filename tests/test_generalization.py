"""The generalization study: Jiang et al.'s granulated Kendall coefficient, against values
computed by hand, its bootstrap, the runs table it reads and its figure."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from conftest import drawn_intervals
from infoopt.report import figures
from infoopt.report.correlation import METRICS, POOLED, TARGETS
from infoopt.report.generalization import (
    PSI,
    axis_groups,
    generalization_table,
    granulated_kendall,
    grid_axes,
    grid_runs,
    ranked_metrics,
    to_markdown,
)


def runs_table(rows, arch="resnet18", base="sgd", seed=0) -> pd.DataFrame:
    """A runs table of one grid: rows of (lr, batch_size, metric, gap)."""
    return pd.DataFrame(
        [
            {
                "dataset": "digits",
                "arch": arch,
                "base_optimizer": base,
                "optimizer": f"{base}-{lr}-{batch}",
                "seed": seed,
                "lr": lr,
                "batch_size": batch,
                "metric": metric,
                "gap": gap,
            }
            for lr, batch, metric, gap in rows
        ]
    )


def estimate(runs: pd.DataFrame, axes=("batch_size", "lr")):
    """(m per axis, Ψ, groups with a defined τ per axis) of the metric against the gap."""
    groups = axis_groups(runs, list(axes))
    m, psi, defined = granulated_kendall(
        runs["metric"], runs["gap"], groups, np.ones((1, len(runs)))
    )
    return (
        {axis: float(v[0]) for axis, v in m.items()},
        float(psi[0]),
        {axis: int(n[0]) for axis, n in defined.items()},
    )


# --- The coefficient against hand computations ---------------------------------------------

# A 2x2 grid. Along lr: at batch 1 the metric and the gap rise together (τ = 1), at batch 2 the
# gap falls (τ = -1): m_lr = 0. Along the batch size both rise at either lr: m_batch = 1.
# Ψ = (0 + 1) / 2.
TWO_BY_TWO = [(1, 1, 1.0, 1.0), (2, 1, 2.0, 2.0), (1, 2, 3.0, 4.0), (2, 2, 4.0, 3.0)]


def test_two_by_two_grid_by_hand():
    m, psi, defined = estimate(runs_table(TWO_BY_TWO))
    assert m == {"batch_size": 1.0, "lr": 0.0}
    assert psi == 0.5
    assert defined == {"batch_size": 2, "lr": 2}


def test_three_by_two_grid_by_hand():
    rows = [
        (1, 1, 1.0, 1.0),
        (2, 1, 2.0, 3.0),
        (3, 1, 3.0, 2.0),
        (1, 2, 4.0, 6.0),
        (2, 2, 6.0, 5.0),
        (3, 2, 5.0, 1.5),
    ]
    # lr at batch 1: metric 1 < 2 < 3, gap 1, 3, 2: 2 concordant pairs, 1 discordant: τ = 1/3.
    # lr at batch 2: metric 4, 6, 5, gap 6, 5, 1.5: pairs (4,6) D, (4,5) D, (6,5) C: τ = -1/3.
    # batch at lr 1: 1 -> 4 with 1 -> 6, +1; lr 2: 2 -> 6 with 3 -> 5, +1; lr 3: 3 -> 5 with
    # 2 -> 1.5, -1. So m_lr = 0, m_batch = 1/3 and Ψ = 1/6.
    m, psi, _ = estimate(runs_table(rows))
    assert m["lr"] == pytest.approx(0.0, abs=1e-15)
    assert m["batch_size"] == pytest.approx(1 / 3)
    assert psi == pytest.approx(1 / 6)


def test_concordant_discordant_and_the_sign_convention():
    rows = [(lr, b, lr + 10.0 * b, lr + 10.0 * b) for lr in (1, 2, 3) for b in (1, 2)]
    runs = runs_table(rows)
    assert estimate(runs)[1] == 1.0, "a metric that grows with the gap: Ψ = +1"
    assert estimate(runs.assign(metric=-runs["metric"]))[1] == -1.0
    assert estimate(runs.assign(gap=-runs["gap"]))[1] == -1.0


def test_ties_give_tau_b_and_an_undefined_group_is_skipped():
    # lr at batch 1: metric 1, 1, 2 with gap 1, 2, 3: τ-b = 2 / sqrt(2 * 3) (one pair tied in
    # the metric). lr at batch 2: the metric is constant, τ undefined, the group skipped.
    rows = [(1, 1, 1.0, 1.0), (2, 1, 1.0, 2.0), (3, 1, 2.0, 3.0)]
    rows += [(1, 2, 5.0, 1.0), (2, 2, 5.0, 2.0), (3, 2, 5.0, 3.0)]
    m, _, defined = estimate(runs_table(rows))
    assert m["lr"] == pytest.approx(2 / math.sqrt(6))
    assert defined["lr"] == 1
    tau, _ = scipy.stats.kendalltau([1.0, 1.0, 2.0], [1.0, 2.0, 3.0])
    assert m["lr"] == pytest.approx(tau)


def test_groups_stay_within_seed_architecture_and_optimizer():
    seed0 = runs_table(TWO_BY_TWO)
    # The same grid at seed 1 with every metric reversed: its groups have τ of opposite sign.
    seed1 = runs_table([(lr, b, -m, g) for lr, b, m, g in TWO_BY_TWO], seed=1)
    other = runs_table(TWO_BY_TWO, base="adam")
    runs = pd.concat([seed0, seed1, other], ignore_index=True)
    groups = axis_groups(runs, ["batch_size", "lr"])
    assert sorted(sorted(map(int, group)) for group in groups["lr"]) == [
        [0, 1],
        [2, 3],
        [4, 5],
        [6, 7],
        [8, 9],
        [10, 11],
    ]
    m, psi, defined = estimate(runs)
    # batch: +1 in sgd seed 0, -1 in sgd seed 1, +1 in adam (2 groups each): m = 1/3.
    assert m["batch_size"] == pytest.approx(1 / 3)
    assert m["lr"] == pytest.approx(0.0, abs=1e-15)
    assert defined == {"batch_size": 6, "lr": 6}


def test_pooled_mean_is_over_groups_not_over_grids():
    # sgd: two lr groups with τ = +1; adam: one lr group with τ = -1. Pooled m_lr = 1/3.
    sgd = runs_table([(1, 1, 1.0, 1.0), (2, 1, 2.0, 2.0), (1, 2, 1.0, 1.0), (2, 2, 2.0, 2.0)])
    adam = runs_table([(1, 1, 1.0, 2.0), (2, 1, 2.0, 1.0)], base="adam")
    m, _, _ = estimate(pd.concat([sgd, adam], ignore_index=True), axes=["lr", "batch_size"])
    assert m["lr"] == pytest.approx(1 / 3)


def test_an_axis_without_groups_is_left_out_of_psi():
    # One batch size only: no group along it; Ψ is m_lr alone.
    runs = runs_table([(1, 64, 1.0, 2.0), (2, 64, 2.0, 1.0)])
    m, psi, defined = estimate(runs)
    assert math.isnan(m["batch_size"]) and defined["batch_size"] == 0
    assert m["lr"] == -1.0 and psi == -1.0
    empty = estimate(runs.iloc[:1])
    assert math.isnan(empty[1]), "no group at all: Ψ undefined"


def test_resample_weights_equal_the_repeated_sample():
    """A resample as multiplicities: run 0 twice, run 1 not drawn, runs 2 and 3 once."""
    runs = runs_table(TWO_BY_TWO)
    weights = np.array([[2.0, 0.0, 1.0, 1.0]])
    groups = axis_groups(runs, ["batch_size", "lr"])
    m, psi, defined = granulated_kendall(runs["metric"], runs["gap"], groups, weights)
    # lr at batch 1 has run 0 only: skipped. lr at batch 2: runs 2, 3 (τ = -1).
    assert m["lr"][0] == -1.0 and defined["lr"][0] == 1
    # batch at lr 1: runs 0, 0, 2 as a sample of three, whose τ-b scipy computes.
    repeated, _ = scipy.stats.kendalltau([1.0, 1.0, 3.0], [1.0, 1.0, 4.0])
    # batch at lr 2: run 3 only: skipped.
    assert m["batch_size"][0] == pytest.approx(repeated) and defined["batch_size"][0] == 1
    assert psi[0] == pytest.approx((repeated - 1.0) / 2)


# --- The table ------------------------------------------------------------------------------


def _study_runs(seed: int = 5) -> pd.DataFrame:
    """Two architectures' SGD grids (lr x batch, 3 x 2) and an Adam grid on one, whose gap a
    noisy metric tracks."""
    rng = np.random.default_rng(seed)
    tables = []
    for arch, base in (("resnet18", "sgd"), ("vit", "sgd"), ("resnet18", "adam")):
        rows = []
        for lr in (1, 2, 3):
            for batch in (64, 128):
                gap = lr + batch / 64 + rng.normal(scale=0.5)
                rows.append((lr, batch, gap + rng.normal(scale=0.5), gap))
        tables.append(runs_table(rows, arch=arch, base=base))
    runs = pd.concat(tables, ignore_index=True).rename(columns={"gap": "generalization_gap"})
    return runs.assign(
        entropy_gap=runs["metric"], hessian_trace=rng.normal(size=len(runs)), test_accuracy=0.0
    )


def test_table_has_every_axis_psi_scope_metric_and_target():
    runs = _study_runs()
    table = generalization_table(
        runs,
        ["batch_size", "lr"],
        ["entropy_gap", "hessian_trace"],
        ["generalization_gap"],
        n_boot=200,
    )
    assert list(dict.fromkeys(table["scope"])) == [
        "resnet18/adam",
        "resnet18/sgd",
        "vit/sgd",
        POOLED,
    ]
    assert set(table["axis"]) == {"batch_size", "lr", PSI}
    assert len(table) == 4 * 2 * 1 * 3
    pooled = table[(table["scope"] == POOLED) & (table["metric"] == "entropy_gap")]
    pooled = pooled.set_index("axis")
    groups = axis_groups(runs, ["batch_size", "lr"])
    m, psi, _ = granulated_kendall(
        runs["entropy_gap"], runs["generalization_gap"], groups, np.ones((1, len(runs)))
    )
    assert pooled.loc["lr", "tau"] == pytest.approx(m["lr"][0])
    assert pooled.loc[PSI, "tau"] == pytest.approx(psi[0])
    assert pooled.loc["lr", "n_groups"] == 3 * 2 and pooled.loc["batch_size", "n_groups"] == 3 * 3
    assert (pooled["n_runs"] == 18).all()
    assert pooled.loc[PSI, "tau"] > 0.5, "the metric tracks the gap"
    assert pooled.loc[PSI, "ci_low"] > 0, "and its interval says so"
    defined = table.dropna(subset=["tau"])
    assert (defined["ci_low"] <= defined["ci_high"]).all()
    assert ((defined["tau"].abs() <= 1) & (defined["n_boot"] <= 200)).all()


def test_bootstrap_is_seeded_and_shared_by_the_scopes():
    runs = _study_runs()
    kwargs = {"metrics": ["entropy_gap"], "targets": ["generalization_gap"], "n_boot": 100}
    first = generalization_table(runs, ["batch_size", "lr"], seed=1, **kwargs)
    pd.testing.assert_frame_equal(
        first, generalization_table(runs, ["batch_size", "lr"], seed=1, **kwargs)
    )
    other = generalization_table(runs, ["batch_size", "lr"], seed=2, **kwargs)
    assert not first["ci_low"].equals(other["ci_low"])
    assert (first["tau"].to_numpy() == other["tau"].to_numpy()).all(), "estimates do not resample"


def test_a_missing_metric_leaves_its_runs_out():
    runs = _study_runs()
    runs.loc[0, "entropy_gap"] = np.nan  # resnet18/sgd at lr 1, batch 64
    table = generalization_table(
        runs, ["batch_size", "lr"], ["entropy_gap"], ["generalization_gap"], n_boot=50
    )
    cell = table[(table["scope"] == "resnet18/sgd")].set_index("axis")
    assert cell.loc[PSI, "n_runs"] == 5
    assert cell.loc["batch_size", "n_groups"] == 2, "the lr-1 pair lost a run"


def test_table_rejects_bad_arguments():
    runs = _study_runs()
    with pytest.raises(ValueError, match=r"unknown columns \['momentum'\]"):
        generalization_table(runs, ["momentum"], ["entropy_gap"], ["generalization_gap"])
    with pytest.raises(ValueError, match="confidence"):
        generalization_table(runs, ["lr"], ["entropy_gap"], ["generalization_gap"], confidence=95)


def test_ranking_and_markdown():
    runs = _study_runs()
    table = generalization_table(
        runs,
        ["batch_size", "lr"],
        ["hessian_trace", "entropy_gap"],
        ["generalization_gap"],
        n_boot=50,
    )
    assert ranked_metrics(table, "generalization_gap") == ["entropy_gap", "hessian_trace"]
    text = to_markdown(table)
    header = [cell.strip() for cell in text.split("\n\n")[2].splitlines()[0].split("|")]
    assert header[1:-1] == [
        "metric",
        "m_batch_size",
        "m_lr",
        "Ψ (pooled)",
        "Ψ (resnet18/adam)",
        "Ψ (resnet18/sgd)",
        "Ψ (vit/sgd)",
    ]
    assert text.index("| entropy_gap") < text.index("| hessian_trace")


# --- From the summary tables ----------------------------------------------------------------


def _summaries(grid: dict, extra: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Training and Hessian summary tables of every point of ``grid`` and the optimizers
    ``extra`` (ResNet18, seed 0), at checkpoints 0.5 and 1, from values derived from the name."""
    from infoopt.grid import grid_points

    names = [name for base, axes in grid.items() for name in grid_points(base, axes)] + extra
    training, hessian = [], []
    for index, name in enumerate(names):
        for progress in (0.5, 1.0):
            keys = {
                "dataset": "digits",
                "arch": "resnet18",
                "optimizer": name,
                "seed": 0,
                "progress": progress,
                "status": "ok",
            }
            training += [
                keys | {"metric": "train_accuracy", "value": 90.0 + index + progress},
                keys | {"metric": "test_accuracy", "value": 80.0 + progress},
            ]
            hessian += [keys | {"metric": m, "value": index * progress} for m in METRICS]
    return pd.DataFrame(training), pd.DataFrame(hessian)


def test_grid_runs_locate_each_run_in_its_grid():
    grid = {"sgd": {"lr": [0.1, 0.03], "batch_size": [64]}, "adam": {"weight_decay": [0.0, 0.5]}}
    training, hessian = _summaries(grid, ["lion"])
    runs = grid_runs(training, hessian, grid)
    assert grid_axes(grid) == ["batch_size", "lr", "weight_decay"]
    assert list(runs.columns[:5]) == ["dataset", "arch", "base_optimizer", "optimizer", "seed"]
    located = runs.set_index("optimizer")
    assert located.loc[
        "sgd-batch_size64-lr0p03", ["base_optimizer", "lr", "batch_size"]
    ].tolist() == [
        "sgd",
        0.03,
        64.0,
    ]
    assert math.isnan(located.loc["sgd-batch_size64-lr0p03", "weight_decay"])
    assert located.loc["adam-weight_decay0p5", "weight_decay"] == 0.5
    assert located.loc["lion", "base_optimizer"] == "lion", "not on a grid: its own name"
    assert located[["batch_size", "lr", "weight_decay"]].loc["lion"].isna().all()
    # The final checkpoint only; the gap is train - test accuracy.
    assert (runs["generalization_gap"] == runs["train_accuracy"] - runs["test_accuracy"]).all()
    assert (runs["test_accuracy"] == 81.0).all()
    table = generalization_table(runs, grid_axes(grid), METRICS, TARGETS, n_boot=20)
    # The metric rises with the gap along every axis; the test accuracy is constant.
    psi = table[(table["axis"] == PSI) & (table["scope"] == POOLED)].set_index(
        ["metric", "target"]
    )["tau"]
    assert (psi.xs("generalization_gap", level="target") == 1.0).all()
    assert psi.xs("test_accuracy", level="target").isna().all()


def test_generalization_figure_ranks_the_metrics():
    runs = _study_runs()
    table = generalization_table(
        runs,
        ["batch_size", "lr"],
        ["hessian_trace", "entropy_gap"],
        ["generalization_gap", "test_accuracy"],
        n_boot=50,
    )
    fig = figures.generalization_figure(table)
    assert len(fig.axes) == 2
    ax = fig.axes[0]
    assert [label.get_text() for label in ax.get_yticklabels()] == ["entropy gap", "hessian trace"]
    estimates, _ = drawn_intervals(ax)
    x = estimates[POOLED]
    rows = table[
        (table["scope"] == POOLED)
        & (table["axis"] == PSI)
        & (table["target"] == "generalization_gap")
    ].set_index("metric")
    np.testing.assert_allclose(x, rows.loc[["entropy_gap", "hessian_trace"], "tau"])
