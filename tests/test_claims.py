"""Seed-paired comparisons of two optimizers (infoopt.report.paired) and the paper's claims
tested with them (infoopt.report.claims), against closed-form t-intervals computed here."""

from __future__ import annotations

import csv
import math

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgb
from scipy.stats import t as student_t

from conftest import REPO
from infoopt.report.claims import (
    CLAIMS,
    VERDICT_COLORS,
    check_claims,
    claims_figure,
    claims_markdown,
)
from infoopt.report.paired import compare_optimizers, verdict

matplotlib.use("Agg")

PAPER_CSV = REPO / "src/infoopt/report/paper_tables.csv"


def summary(
    values: dict[tuple[str, int], float | None],
    metric: str = "test_accuracy",
    arch: str = "vit",
    progress: float = 1.0,
    diverged: frozenset[tuple[str, int]] = frozenset(),
) -> pd.DataFrame:
    """A long summary table, a row per (optimizer, seed); None is a missing value and the runs
    named in ``diverged`` have status ``diverged`` (their value kept, to show it is unused)."""
    return pd.DataFrame(
        [
            {
                "dataset": "d",
                "arch": arch,
                "optimizer": optimizer,
                "seed": seed,
                "progress": progress,
                "status": "diverged" if (optimizer, seed) in diverged else "ok",
                "metric": metric,
                "value": math.nan if value is None else value,
            }
            for (optimizer, seed), value in values.items()
        ]
    )


def pairs(a: list[float], b: list[float]) -> dict[tuple[str, int], float]:
    """Runs of optimizers "a" and "b" at seeds 0, 1, …."""
    return {("a", s): v for s, v in enumerate(a)} | {("b", s): v for s, v in enumerate(b)}


def closed_form_interval(d: np.ndarray, confidence: float = 0.95) -> tuple[float, float, float]:
    """mean ± t_{(1+confidence)/2, n−1} · s/√n, with numpy (scipy only for the quantile)."""
    half = student_t.ppf((1 + confidence) / 2, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
    return d.mean(), d.mean() - half, d.mean() + half


def only_row(table: pd.DataFrame) -> pd.Series:
    assert len(table) == 1
    return table.iloc[0]


def assert_paired_interval(row: pd.Series, differences: list[float]) -> None:
    """The row's pairs, mean and interval are those of ``differences``, in closed form."""
    assert row["n_pairs"] == len(differences)
    assert (row["mean_difference"], row["ci_low"], row["ci_high"]) == pytest.approx(
        closed_form_interval(np.array(differences)), rel=1e-9
    )


# --- compare_optimizers ---------------------------------------------------------------------


def test_interval_and_p_value_are_the_closed_form_paired_t():
    a, b = [71.0, 74.5, 69.0], [70.0, 72.0, 68.5]
    d = np.array([1.0, 2.5, 0.5])
    row = only_row(compare_optimizers(summary(pairs(a, b)), "test_accuracy", "a", "b", ">"))
    assert_paired_interval(row, list(d))
    mean, low, high = closed_form_interval(d)
    t = mean / (d.std(ddof=1) / np.sqrt(3))
    assert row["p_value"] == pytest.approx(2 * student_t.sf(abs(t), 2), rel=1e-10)
    assert (row["arch"], row["progress"], row["metric"]) == ("vit", 1.0, "test_accuracy")
    assert (row["optimizer_a"], row["optimizer_b"], row["expected"]) == ("a", "b", ">")
    # a > b at every seed, but three seeds this spread leave 0 inside the interval.
    assert low < 0 < high and row["verdict"] == "inconclusive"
    wide = only_row(compare_optimizers(summary(pairs(a, b)), "test_accuracy", "a", "b", ">", 0.9))
    assert (wide["ci_low"], wide["ci_high"]) == pytest.approx(closed_form_interval(d, 0.9)[1:])


@pytest.mark.parametrize(
    ("differences", "expected", "outcome"),
    [
        ([1.0, 1.2, 0.9], ">", "reproduced"),
        ([1.0, 1.2, 0.9], "<", "contradicted"),
        ([-1.0, -1.2, -0.9], "<", "reproduced"),
        ([-1.0, -1.2, -0.9], ">", "contradicted"),
        ([1.0, -1.0, 0.5], ">", "inconclusive"),
        ([1.0, -1.0, 0.5], "<", "inconclusive"),
    ],
)
def test_verdicts(differences, expected, outcome):
    b = [50.0, 60.0, 55.0]
    a = list(np.add(b, differences))
    row = only_row(compare_optimizers(summary(pairs(a, b)), "test_accuracy", "a", "b", expected))
    assert_paired_interval(row, differences)
    assert row["verdict"] == outcome


def test_one_pair_or_none_is_inconclusive():
    one = only_row(
        compare_optimizers(summary(pairs([99.0], [1.0])), "test_accuracy", "a", "b", ">")
    )
    assert one["n_pairs"] == 1 and one["mean_difference"] == 98.0
    assert math.isnan(one["ci_low"]) and math.isnan(one["ci_high"]) and math.isnan(one["p_value"])
    assert one["verdict"] == "inconclusive"
    # Optimizer "c" has no runs: no pair at all.
    none = only_row(
        compare_optimizers(summary(pairs([1.0], [2.0])), "test_accuracy", "a", "c", ">")
    )
    assert none["n_pairs"] == 0 and math.isnan(none["mean_difference"])
    assert none["verdict"] == "inconclusive"


def test_equal_runs_are_inconclusive_and_a_constant_difference_is_not():
    """Shared initial weights give a − b = 0 at every seed: the interval is [0, 0]."""
    same = only_row(
        compare_optimizers(summary(pairs([5.0, 6.0], [5.0, 6.0])), "test_accuracy", "a", "b", ">")
    )
    assert (same["ci_low"], same["ci_high"], same["p_value"]) == (0.0, 0.0, 1.0)
    assert same["verdict"] == "inconclusive"
    shifted = only_row(
        compare_optimizers(summary(pairs([5.5, 6.5], [5.0, 6.0])), "test_accuracy", "a", "b", "<")
    )
    assert (shifted["ci_low"], shifted["ci_high"]) == (0.5, 0.5)
    assert shifted["verdict"] == "contradicted"


def test_runs_are_paired_by_seed_and_unpaired_seeds_are_dropped():
    # Seeds 3 (a only) and 4 (b only) have no partner; rows in no particular order.
    values = {("a", 0): 10.1, ("b", 0): 10.0, ("a", 3): -500.0, ("b", 4): 900.0}
    values |= {("b", 2): 30.0, ("a", 1): 20.12, ("a", 2): 30.09, ("b", 1): 20.0}
    table = summary(values).sample(frac=1.0, random_state=0)
    row = only_row(compare_optimizers(table, "test_accuracy", "a", "b", ">"))
    assert_paired_interval(row, [0.1, 0.12, 0.09])
    assert row["verdict"] == "reproduced"


def test_pairing_gives_another_verdict_than_an_unpaired_comparison():
    """Seeds differ much more than the optimizers: seed by seed a is consistently above b, which
    an unpaired (pooled two-sample) interval cannot see, and which pairing the runs of
    different seeds destroys."""
    b = np.array([60.0, 75.0, 90.0])
    a = b + np.array([0.1, 0.12, 0.09])
    row = only_row(
        compare_optimizers(summary(pairs(list(a), list(b))), "test_accuracy", "a", "b", ">")
    )
    assert row["verdict"] == "reproduced"
    pooled = np.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2)
    half = student_t.ppf(0.975, 4) * pooled * np.sqrt(2 / 3)
    unpaired = (a.mean() - b.mean() - half, a.mean() - b.mean() + half)
    assert unpaired[0] < 0 < unpaired[1], "unpaired: inconclusive"
    shuffled = {("a", s): v for s, v in enumerate(a)} | {
        ("b", (s + 1) % 3): v for s, v in enumerate(b)
    }
    wrong = only_row(compare_optimizers(summary(shuffled), "test_accuracy", "a", "b", ">"))
    assert wrong["verdict"] == "inconclusive", "seeds paired with other seeds"


def test_diverged_runs_and_missing_values_are_left_out():
    values = pairs([10.0, 11.0, 12.5, 13.0, 14.0], [9.0, 9.5, 11.0, 8.0, 20.0])
    values[("b", 3)] = None  # a finished run without a value
    table = summary(values, diverged=frozenset({("a", 4)}))
    row = only_row(compare_optimizers(table, "test_accuracy", "a", "b", ">"))
    assert_paired_interval(row, [1.0, 1.5, 1.5])
    assert row["verdict"] == "reproduced"


def test_a_row_per_arch_and_checkpoint_of_the_metric():
    parts = [
        summary(pairs([1.0, 2.0], [0.0, 0.5]), arch=arch, progress=progress)
        for arch in ("vit", "resnet18")
        for progress in (1.0, 0.0)
    ]
    parts.append(summary(pairs([7.0], [7.0]), metric="entropy_gap"))
    table = compare_optimizers(pd.concat(parts), "test_accuracy", "a", "b", "<")
    assert list(zip(table["arch"], table["progress"], strict=True)) == [
        ("resnet18", 0.0),
        ("resnet18", 1.0),
        ("vit", 0.0),
        ("vit", 1.0),
    ]
    assert (table["n_pairs"] == 2).all() and (table["metric"] == "test_accuracy").all()
    with pytest.raises(ValueError, match="no values of metric 'sharpness'"):
        compare_optimizers(pd.concat(parts), "sharpness", "a", "b", "<")


def test_verdict_needs_the_interval_to_exclude_zero():
    assert verdict(0.0, 1.0, ">") == "inconclusive"
    assert verdict(-1.0, 0.0, "<") == "inconclusive"
    assert verdict(1e-9, 1.0, ">") == "reproduced"
    assert verdict(-1.0, -1e-9, ">") == "contradicted"
    assert verdict(math.nan, math.nan, ">") == "inconclusive"
    with pytest.raises(ValueError, match="expected must be one of"):
        verdict(1.0, 2.0, "larger")


# --- the paper's claims ---------------------------------------------------------------------


def paper_differences() -> dict[tuple[str, str, float], float]:
    """The paper's SGD − Adam per (metric, arch, progress), read with the csv module."""
    with PAPER_CSV.open() as handle:
        rows = list(csv.DictReader(handle))
    value = {
        (r["metric"], r["arch"], r["optimizer"], float(r["progress"])): float(r["value"])
        for r in rows
    }
    return {
        (metric, arch, progress): value[(metric, arch, "sgd", progress)] - v
        for (metric, arch, optimizer, progress), v in value.items()
        if optimizer == "adam"
    }


def claim_summary(seeds: int, swap: bool = False) -> pd.DataFrame:
    """Per-seed values of every claim's metric: at 0 % equal for both optimizers (shared initial
    weights), at 100 % the paper's final values plus a seed effect shared by both optimizers and
    a small jitter, so that SGD − Adam is the paper's difference within 1 %."""
    paper = paper_differences()
    rng = np.random.default_rng(0)
    rows = []
    for claim in CLAIMS:
        difference = paper[(claim.metric, claim.arch, 1.0)]
        for seed in range(seeds):
            shared = rng.normal(scale=10 * abs(difference))
            for optimizer in ("sgd", "adam"):
                final = shared + rng.normal(scale=0.01 * abs(difference))
                if (optimizer == "sgd") != swap:
                    final += difference
                for progress, value in ((0.0, shared), (1.0, final)):
                    rows.append(
                        {
                            "arch": claim.arch,
                            "optimizer": optimizer,
                            "seed": seed,
                            "progress": progress,
                            "status": "ok",
                            "metric": claim.metric,
                            "value": value,
                        }
                    )
    return pd.DataFrame(rows)


def test_claims_reproduced_from_per_seed_values_that_follow_the_paper():
    table = check_claims(claim_summary(seeds=3))
    assert list(table.columns) == [
        "claim",
        "metric",
        "arch",
        "progress",
        "optimizer_a",
        "optimizer_b",
        "n_pairs",
        "mean_difference",
        "ci_low",
        "ci_high",
        "p_value",
        "paper_direction",
        "verdict",
        "paper_difference",
    ]
    assert list(dict.fromkeys(table["claim"])) == [claim.statement for claim in CLAIMS]
    final = table[table["progress"] == 1.0]
    assert len(final) == len(CLAIMS) and (final["verdict"] == "reproduced").all()
    assert (final["n_pairs"] == 3).all()
    assert ((final["optimizer_a"] == "sgd") & (final["optimizer_b"] == "adam")).all()
    start = table[table["progress"] == 0.0]
    assert (start["mean_difference"] == 0).all() and (start["verdict"] == "inconclusive").all()
    paper = paper_differences()
    for _, row in table.iterrows():
        assert row["paper_difference"] == pytest.approx(
            paper[(row["metric"], row["arch"], row["progress"])]
        )
    signs = np.sign(final["paper_difference"]).to_numpy()
    np.testing.assert_array_equal(signs, final["paper_direction"].map({">": 1, "<": -1}))


def test_claims_contradicted_when_the_optimizers_swap_and_inconclusive_with_one_seed():
    swapped = check_claims(claim_summary(seeds=3, swap=True))
    assert (swapped.loc[swapped["progress"] == 1.0, "verdict"] == "contradicted").all()
    single = check_claims(claim_summary(seeds=1))
    assert (single["verdict"] == "inconclusive").all() and (single["n_pairs"] == 1).all()


def test_claims_leave_out_architectures_without_runs():
    long = claim_summary(seeds=2)
    table = check_claims(long[long["arch"] == "vit"])
    vit_claims = [claim.statement for claim in CLAIMS if claim.arch == "vit"]
    assert list(dict.fromkeys(table["claim"])) == vit_claims
    assert set(table["arch"]) == {"vit"} and len(table) == 2 * len(vit_claims)
    with pytest.raises(
        ValueError, match=r"no runs of the claims' architectures.*have: \['lenet'\]"
    ):
        check_claims(long[long["arch"] == "vit"].assign(arch="lenet"))


def test_claims_markdown_and_figure_show_the_interval_and_verdict():
    table = check_claims(claim_summary(seeds=3))
    lines = [line for line in claims_markdown(table).splitlines() if line.startswith("| ")]
    cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    assert len(cells) == 1 + len(table), "a header and a row per claim and checkpoint"
    row = table[(table["progress"] == 1.0) & (table["arch"] == "resnet18")].iloc[0]
    interval = f"{row['mean_difference']:.3g} [{row['ci_low']:.3g}, {row['ci_high']:.3g}]"
    expected = [row["claim"], "100%", "3", interval, f"{row['p_value']:.3g}", "sgd > adam (1.68)"]
    assert expected + ["reproduced"] in cells
    fig = claims_figure(table)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == len(CLAIMS)
    for ax, claim in zip(visible, CLAIMS, strict=True):
        assert ax.get_title().startswith(claim.statement)
        rows = table[table["claim"] == claim.statement]
        drawn = {container.lines[0].get_gid(): container for container in ax.containers}
        assert set(drawn) == set(rows["verdict"])
        for name, container in drawn.items():
            shown = rows[rows["verdict"] == name]
            _, y = container.lines[0].get_data()
            np.testing.assert_allclose(y, shown["mean_difference"])
            assert to_rgb(container.lines[0].get_color()) == pytest.approx(VERDICT_COLORS[name])
            segments = container.lines[2][0].get_segments()
            bars = [(s[0][1], s[1][1]) for s in segments if len(s)]
            expected = list(zip(shown["ci_low"], shown["ci_high"], strict=True))
            np.testing.assert_allclose(bars, expected)
