"""The results layer's library: Kendall's τ and its interval, the figures, provenance, and the
notebooks' committed form."""

from __future__ import annotations

import csv
import json
import math

import matplotlib
import numpy as np
import pandas as pd
import pytest
import scipy.stats

from conftest import REPO, drawn_intervals
from infoopt.report import correlation, figures, provenance

matplotlib.use("Agg")

PAPER_CSV = REPO / "src/infoopt/report/paper_tables.csv"


def paper_from_csv() -> list[dict]:
    """The paper's numbers read with the csv module: a reference independent of pandas."""
    with PAPER_CSV.open() as handle:
        return [
            {**row, "progress": float(row["progress"]), "value": float(row["value"])}
            for row in csv.DictReader(handle)
        ]


# --- Kendall's τ --------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_tau_matches_scipy_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 60))
    x = rng.integers(0, 6, n).astype(float)  # many ties
    y = x + rng.integers(-3, 4, n)
    assert correlation.kendall_tau(x, y) == pytest.approx(
        scipy.stats.kendalltau(x, y).statistic, abs=1e-12
    )


def test_weighted_tau_equals_tau_of_the_repeated_sample():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=15), rng.normal(size=15)
    y[:5] = y[5:10]  # ties in y
    weights = rng.integers(0, 4, size=(20, 15))
    weights[:, :2] += 1
    ours = correlation.weighted_kendall_tau(x, y, weights)
    for row, tau in zip(weights, ours, strict=True):
        expected = scipy.stats.kendalltau(np.repeat(x, row), np.repeat(y, row)).statistic
        assert tau == pytest.approx(expected, abs=1e-12)


def test_tau_of_a_constant_variable_is_nan():
    assert math.isnan(correlation.kendall_tau([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))


def test_tau_rejects_nan_and_mismatched_lengths():
    with pytest.raises(ValueError, match="NaN"):
        correlation.kendall_tau([1.0, math.nan], [1.0, 2.0])
    with pytest.raises(ValueError, match="equal length"):
        correlation.kendall_tau([1.0, 2.0], [1.0, 2.0, 3.0])


def test_bootstrap_draws_whole_runs_within_strata():
    clusters = ["a"] * 3 + ["b"] * 3 + ["c"] * 2 + ["d"] * 2 + ["e"] * 2
    strata = ["x"] * 6 + ["y"] * 6
    weights = correlation.cluster_bootstrap_weights(clusters, strata, 500, np.random.default_rng(0))
    assert weights.shape == (500, 12)
    for start, stop in ((0, 3), (3, 6), (6, 8), (8, 10), (10, 12)):
        assert (weights[:, start:stop] == weights[:, [start]]).all(), "a run is drawn whole"
    assert (weights[:, [0, 3]].sum(axis=1) == 2).all(), "stratum x: 2 runs drawn"
    assert (weights[:, [6, 8, 10]].sum(axis=1) == 3).all(), "stratum y: 3 runs drawn"
    # Each run is drawn with probability 1/(runs in its stratum) per draw.
    assert weights[:, 6].mean() == pytest.approx(1.0, abs=0.1)


def test_bootstrap_rejects_a_run_in_two_strata():
    with pytest.raises(ValueError, match="single stratum"):
        correlation.cluster_bootstrap_weights(
            ["a", "a", "b"], ["x", "y", "y"], 10, np.random.default_rng(0)
        )


def _clustered_sample(rng, runs, checkpoints, rho):
    """Runs with a strong run effect; every pair of points has correlation ``rho``, so the
    expected sample τ is Kendall's population value 2/π·asin(ρ) exactly."""
    cov = np.array([[1.0, rho], [rho, 1.0]])
    effect = rng.multivariate_normal([0, 0], 4 * cov, size=runs)
    noise = rng.multivariate_normal([0, 0], cov, size=(runs, checkpoints))
    xy = (effect[:, None, :] + noise).reshape(-1, 2)
    return xy[:, 0], xy[:, 1], np.repeat(np.arange(runs), checkpoints)


def test_run_bootstrap_interval_covers_the_true_tau():
    """90 % intervals on 100 synthetic grids (20 runs × 6 checkpoints, known τ): resampling runs
    covers about 90 % of the time; resampling checkpoints as if independent does not."""
    rho = 0.5
    true_tau = 2 / math.pi * math.asin(rho)
    rng = np.random.default_rng(7)
    covered = {"runs": 0, "checkpoints": 0}
    trials = 100
    for trial in range(trials):
        x, y, runs = _clustered_sample(rng, 20, 6, rho)
        for unit, clusters in (("runs", runs), ("checkpoints", np.arange(len(x)))):
            interval = correlation.kendall_interval(
                x, y, clusters, n_boot=250, confidence=0.9, seed=trial
            )
            covered[unit] += interval.low <= true_tau <= interval.high
    assert 0.8 <= covered["runs"] / trials <= 0.97
    assert covered["checkpoints"] / trials < 0.7


def _long_tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Training and Hessian summary tables of 2 archs × 2 optimizers × 3 seeds × 4 checkpoints."""
    rng = np.random.default_rng(3)
    training, hessian = [], []
    for arch in ("resnet18", "vit"):
        for optimizer in ("sgd", "adam"):
            for seed in range(3):
                for progress in (0.0, 0.01, 0.5, 1.0):
                    keys = {
                        "dataset": "digits",
                        "arch": arch,
                        "optimizer": optimizer,
                        "seed": seed,
                        "progress": progress,
                        "status": "ok",
                    }
                    test = 10 + 80 * progress + rng.normal()
                    train = test + 5 * progress + rng.normal()
                    training += [
                        keys | {"metric": "test_accuracy", "value": test},
                        keys | {"metric": "train_accuracy", "value": train},
                        keys | {"metric": "test_loss", "value": 1.0},
                    ]
                    for metric in correlation.METRICS:
                        value = (1 + progress) * rng.uniform(0.5, 2.0)
                        hessian.append(keys | {"metric": metric, "value": value})
    return pd.DataFrame(training), pd.DataFrame(hessian)


def test_points_join_accuracy_and_metrics():
    training, hessian = _long_tables()
    first_checkpoint = (training["arch"] == "resnet18") & (training["optimizer"] == "sgd")
    first_checkpoint &= (training["seed"] == 0) & (training["progress"] == 1.0)
    training.loc[first_checkpoint, "status"] = "diverged"
    points = correlation.checkpoint_points(training, hessian)
    assert len(points) == 2 * 2 * 3 * 4 - 1
    first = points.iloc[-1]
    rows = training[
        (training["arch"] == first["arch"])
        & (training["optimizer"] == first["optimizer"])
        & (training["seed"] == first["seed"])
        & (training["progress"] == first["progress"])
    ].set_index("metric")["value"]
    assert first["generalization_gap"] == pytest.approx(
        rows["train_accuracy"] - rows["test_accuracy"]
    )


def test_correlation_table_per_arch_and_pooled():
    training, hessian = _long_tables()
    points = correlation.checkpoint_points(training, hessian)
    table = correlation.correlation_table(points, n_boot=200)
    assert list(table.columns) == correlation.COLUMNS
    assert set(table["scope"]) == {"resnet18", "vit", correlation.POOLED}
    assert len(table) == 3 * len(correlation.METRICS) * len(correlation.TARGETS)
    for _, row in table.iterrows():
        subset = (
            points if row["scope"] == correlation.POOLED else points.query("arch == @row.scope")
        )
        expected = scipy.stats.kendalltau(subset[row["metric"]], subset[row["target"]]).statistic
        assert row["tau"] == pytest.approx(expected, abs=1e-12)
        assert row["ci_low"] <= row["ci_high"]
        assert row["n_runs"] == (12 if row["scope"] == correlation.POOLED else 6)
        assert row["n_points"] == 4 * row["n_runs"]
    again = correlation.correlation_table(points, n_boot=200)
    pd.testing.assert_frame_equal(table, again)
    markdown = correlation.to_markdown(table)
    assert "entropy_gap" in markdown and "generalization_gap (pooled)" in markdown


def test_correlation_table_names_unknown_columns():
    training, hessian = _long_tables()
    points = correlation.checkpoint_points(training, hessian)
    with pytest.raises(ValueError, match="unknown columns \\['sharpness'\\]"):
        correlation.correlation_table(points, metrics=["sharpness"])


# --- Figures --------------------------------------------------------------------------------


def _paper_lines(fig) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
    """(panel title, optimizer) -> the x and y data of the paper's markers."""
    found = {}
    for ax in fig.axes:
        for line in ax.get_lines():
            if (line.get_gid() or "").startswith("paper:"):
                key = (ax.get_title(), line.get_gid().split(":")[1])
                found.setdefault(key, []).append(np.column_stack(line.get_data()))
    return {key: np.concatenate(parts) for key, parts in found.items()}


def test_progress_figure_lines_bands_and_paper_markers():
    training, hessian = _long_tables()
    fig = figures.progress_figure(hessian, "entropy_gap", paper=pd.read_csv(PAPER_CSV))
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["resnet18", "vit"]
    assert axes[0].get_ylabel() == "mean entropy gap over blocks (nats)"
    assert axes[0].get_xlabel() == "training progress (% of optimizer steps)"
    rows = hessian[hessian["metric"] == "entropy_gap"]
    for ax in axes:
        lines = {line.get_label(): line for line in ax.get_lines() if line.get_gid() is None}
        assert set(lines) == {"sgd", "adam"}
        for optimizer, line in lines.items():
            mine = rows[(rows["arch"] == ax.get_title()) & (rows["optimizer"] == optimizer)]
            stats = mine.groupby("progress")["value"].agg(["mean", "min", "max"])
            np.testing.assert_allclose(line.get_xdata(), 100 * stats.index)
            np.testing.assert_allclose(line.get_ydata(), stats["mean"])
        assert len(ax.collections) == 2, "a band per optimizer"
    paper = [r for r in paper_from_csv() if r["metric"] == "entropy_gap"]
    markers = _paper_lines(fig)
    assert set(markers) == {(r["arch"], r["optimizer"]) for r in paper}
    for (arch, optimizer), data in markers.items():
        expected = sorted(
            (100 * r["progress"], r["value"])
            for r in paper
            if r["arch"] == arch and r["optimizer"] == optimizer
        )
        np.testing.assert_array_equal(sorted(map(tuple, data)), expected)


def test_progress_band_is_the_range_over_seeds():
    training, _ = _long_tables()
    fig = figures.progress_figure(training, "test_accuracy")
    ax = fig.axes[0]
    rows = training[(training["metric"] == "test_accuracy") & (training["arch"] == "resnet18")]
    for line, band in zip(
        [line for line in ax.get_lines() if line.get_gid() is None], ax.collections, strict=True
    ):
        mine = rows[rows["optimizer"] == line.get_label()]
        stats = mine.groupby("progress")["value"].agg(["min", "max"])
        vertices = band.get_paths()[0].vertices
        for progress, low, high in stats.itertuples():
            at = vertices[np.isclose(vertices[:, 0], 100 * progress), 1]
            assert at.min() == pytest.approx(low) and at.max() == pytest.approx(high)
    assert not _paper_lines(fig), "no markers without the paper's values"


def test_progress_figure_uses_log_scale_for_traces_and_names_bad_metrics():
    _, hessian = _long_tables()
    fig = figures.progress_figure(hessian, "abs_trace_sum", paper=pd.read_csv(PAPER_CSV))
    assert all(ax.get_yscale() == "log" for ax in fig.axes)
    with pytest.raises(ValueError, match="no values of metric 'sharpness'"):
        figures.progress_figure(hessian, "sharpness")


def test_block_gap_figure_boxes_and_table4_markers():
    rng = np.random.default_rng(0)
    blocks = pd.DataFrame(
        [
            {
                "arch": arch,
                "optimizer": optimizer,
                "seed": seed,
                "progress": progress,
                "status": "ok",
                "block": f"b{block}",
                "gap": rng.uniform(0, 2),
            }
            for arch in ("resnet18", "vit")
            for optimizer in ("sgd", "adam")
            for seed in range(2)
            for progress in (0.0, 0.25, 1.0)
            for block in range(5)
        ]
    )
    fig = figures.block_gap_figure(blocks, paper=pd.read_csv(PAPER_CSV))
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "25", "100"]
    assert ax.get_ylabel() == "entropy gap of a block (nats)"
    # The mean markers of the boxes are Table 4's quantity: the mean gap over blocks and seeds.
    means = sorted(
        float(line.get_ydata()[0])
        for line in ax.get_lines()
        if (line.get_gid() or "").startswith("mean:")
    )
    expected = blocks[blocks["arch"] == "resnet18"].groupby(["optimizer", "progress"])["gap"]
    np.testing.assert_allclose(means, sorted(expected.mean()))
    paper = [r for r in paper_from_csv() if r["metric"] == "entropy_gap"]
    for (arch, optimizer), data in _paper_lines(fig).items():
        expected = sorted(
            r["value"]
            for r in paper
            if r["arch"] == arch and r["optimizer"] == optimizer and r["progress"] in (0, 0.25, 1)
        )
        assert sorted(data[:, 1]) == expected


def test_accuracy_figure_points_and_final_paper_values():
    training, hessian = _long_tables()
    points = correlation.checkpoint_points(training, hessian)
    fig = figures.accuracy_figure(points, paper=pd.read_csv(PAPER_CSV))
    shown = [ax for ax in fig.axes if ax.get_visible()]
    assert len(shown) == len(correlation.METRICS)
    assert shown[0].get_xlabel() == "mean entropy gap over blocks (nats)"
    assert shown[0].get_ylabel() == "test accuracy (%)"
    final = points[points["progress"] == 1.0]
    offsets = shown[0].collections[0].get_offsets()
    np.testing.assert_allclose(
        sorted(map(tuple, offsets)),
        sorted(zip(final["entropy_gap"], final["test_accuracy"], strict=True)),
    )
    paper = {
        (r["metric"], r["arch"], r["optimizer"]): r["value"]
        for r in paper_from_csv()
        if r["progress"] == 1.0
    }
    gap_markers = [
        line.get_xydata()[0] for line in shown[0].get_lines() if line.get_gid() is not None
    ]
    expected = [
        (paper[("entropy_gap", arch, opt)], paper[("test_accuracy", arch, opt)])
        for arch in ("resnet18", "vit")
        for opt in ("sgd", "adam")
    ]
    assert sorted(map(tuple, gap_markers)) == sorted(expected)
    assert not [line for line in shown[4].get_lines() if line.get_gid()], "no paper λ_max"


def test_correlation_figure_draws_the_table():
    training, hessian = _long_tables()
    table = correlation.correlation_table(
        correlation.checkpoint_points(training, hessian), n_boot=100
    )
    # A percentile interval need not contain its estimate: drawn all the same.
    table.loc[0, "tau"] = table.loc[0, "ci_high"] + 0.1
    fig = figures.correlation_figure(table)
    assert len(fig.axes) == 2
    for ax, target in zip(fig.axes, correlation.TARGETS, strict=True):
        estimates, intervals = drawn_intervals(ax)
        assert estimates and set(estimates) == set(intervals)
        for scope, x in estimates.items():
            rows = table[(table["target"] == target) & (table["scope"] == scope)]
            np.testing.assert_allclose(x, rows["tau"])
            segments = intervals[scope].get_segments()
            np.testing.assert_allclose([s[0][0] for s in segments], rows["ci_low"])
            np.testing.assert_allclose([s[1][0] for s in segments], rows["ci_high"])


def test_saved_figures_are_byte_identical(tmp_path):
    training, _ = _long_tables()
    for name in ("a", "b"):
        fig = figures.progress_figure(training, "test_accuracy", pd.read_csv(PAPER_CSV))
        figures.save_figure(fig, tmp_path / f"{name}.pdf", tmp_path / f"{name}.png")
    assert (tmp_path / "a.pdf").read_bytes()[:5] == b"%PDF-"
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"
    for suffix in ("pdf", "png"):
        assert (tmp_path / f"a.{suffix}").read_bytes() == (tmp_path / f"b.{suffix}").read_bytes()


# --- Provenance -----------------------------------------------------------------------------


def test_provenance_groups_runs_by_commit_torch_and_device():
    base = {
        "dataset": "digits",
        "arch": "vit",
        "epochs": 2,
        "total_steps": 10,
        "hparams": "{}",
        "optimizer_package": "infoopt",
        "torch": "2.14.1",
        "device": "cpu",
    }
    runs = pd.DataFrame(
        [
            base
            | {"optimizer": "sgd", "seed": 0, "status": "ok", "wall_seconds": 1800.0}
            | {"git_commit": "abc"},
            base
            | {"optimizer": "adam", "seed": 0, "status": "diverged", "wall_seconds": 1800.0}
            | {"git_commit": "abc"},
            base
            | {"optimizer": "sgd", "seed": 1, "status": "ok", "wall_seconds": 60.0}
            | {"git_commit": None},
        ]
    )
    table = provenance.run_provenance(runs)
    assert table["git_commit"].tolist() == ["abc", "abc", provenance.UNKNOWN]
    summary = provenance.provenance_summary(runs).set_index("git_commit")
    assert summary.loc["abc", "runs"] == 2 and summary.loc["abc", "diverged"] == 1
    assert summary.loc["abc", "wall_hours"] == pytest.approx(1.0)
    assert "3 runs" in provenance.to_markdown(runs)
    with pytest.raises(ValueError, match="lacks \\['device'\\]"):
        provenance.run_provenance(runs.drop(columns="device"))


# --- Notebooks as committed -----------------------------------------------------------------


@pytest.mark.parametrize("path", sorted((REPO / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_notebook_is_committed_clean(path):
    notebook = json.loads(path.read_text())
    assert notebook["metadata"]["kernelspec"]["name"] == "python3"
    assert notebook["metadata"]["language_info"]["name"] == "python"
    code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    for cell in code:
        assert cell["outputs"] == [], "outputs stripped"
        assert cell["execution_count"] is None, "no execution counts"
    tagged = [cell for cell in code if "parameters" in cell["metadata"].get("tags", [])]
    assert len(tagged) == 1, "exactly one code cell tagged `parameters`"
