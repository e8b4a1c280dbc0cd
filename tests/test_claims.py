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
from scipy.stats import nct
from scipy.stats import t as student_t

from conftest import REPO
from infoopt.report.claims import (
    CLAIMS,
    VERDICT_COLORS,
    check_claims,
    claims_figure,
    claims_markdown,
)
from infoopt.report.paired import (
    REASONS,
    assess,
    compare_architectures,
    compare_optimizers,
    holm,
    min_pairs,
    pairs_needed,
    sign_flip_min_pvalue,
    verdict,
)

matplotlib.use("Agg")

PAPER_CSV = REPO / "src/infoopt/report/paper_tables.csv"
# The paper's own claims: orderings of two optimizers on one architecture.
PAPER_CLAIMS = [claim for claim in CLAIMS if claim.between == "optimizer"]


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
    assert row["reason"] == "too few pairs"
    wide = only_row(compare_optimizers(summary(pairs(a, b)), "test_accuracy", "a", "b", ">", 0.9))
    assert (wide["ci_low"], wide["ci_high"]) == pytest.approx(closed_form_interval(d, 0.9)[1:])


SIX_UP = [1.0, 1.2, 0.9, 1.1, 1.05, 0.95]
MIXED = [1.0, -1.0, 0.5, -0.3, 0.2, -0.6]


@pytest.mark.parametrize(
    ("differences", "expected", "outcome", "reason"),
    [
        (SIX_UP, ">", "reproduced", None),
        (SIX_UP, "<", "contradicted", None),
        (list(-np.array(SIX_UP)), "<", "reproduced", None),
        (list(-np.array(SIX_UP)), ">", "contradicted", None),
        (MIXED, ">", "inconclusive", "interval contains 0"),
        (MIXED, "<", "inconclusive", "interval contains 0"),
    ],
)
def test_verdicts(differences, expected, outcome, reason):
    b = [50.0, 60.0, 55.0, 52.0, 58.0, 61.0]
    a = list(np.add(b, differences))
    row = only_row(compare_optimizers(summary(pairs(a, b)), "test_accuracy", "a", "b", expected))
    assert_paired_interval(row, differences)
    assert row["verdict"] == outcome
    assert (row["reason"] if pd.notna(row["reason"]) else None) == reason
    # Six differences of one sign: the exact test's smallest p, 2/2⁶.
    if outcome != "inconclusive":
        assert row["sign_flip_p"] == pytest.approx(2 / 2**6)
        assert pd.isna(row["pairs_needed"]) and row["pairs_needed_note"] == "decided"


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


def test_equal_runs_and_a_constant_difference_are_inconclusive():
    """Shared initial weights give a − b = 0 at every seed: the interval is [0, 0]. A constant
    difference (one test image at every seed) makes it a point too, and p = 0: an artefact."""
    b = [5.0, 6.0, 7.0, 8.0, 9.0, 10.0]
    same = only_row(compare_optimizers(summary(pairs(b, b)), "test_accuracy", "a", "b", ">"))
    assert (same["ci_low"], same["ci_high"], same["p_value"]) == (0.0, 0.0, 1.0)
    assert (same["verdict"], same["reason"]) == ("inconclusive", "no spread")
    assert pd.isna(same["pairs_needed"])
    assert same["pairs_needed_note"] == "unbounded: mean difference 0"
    # 0.278 = one test image of 360, as the smoke run's ViT gave; the floats differ in the
    # last digits, the interval collapses to (nearly) a point, the t-test's p to (nearly) 0.
    a = list(np.add(b, 100 / 360))
    shifted = only_row(compare_optimizers(summary(pairs(a, b)), "test_accuracy", "a", "b", "<"))
    assert shifted["ci_low"] == pytest.approx(shifted["ci_high"], rel=1e-9)
    assert shifted["p_value"] < 1e-10 and shifted["sign_flip_p"] == pytest.approx(2 / 2**6)
    assert (shifted["verdict"], shifted["reason"]) == ("inconclusive", "no spread")
    assert shifted["pairs_needed_note"] == "no spread to size from"


def test_runs_are_paired_by_seed_and_unpaired_seeds_are_dropped():
    # Seeds 10 (a only) and 11 (b only) have no partner; rows in no particular order.
    d = [0.1, 0.12, 0.09, 0.11, 0.1, 0.13]
    values = {("a", 10): -500.0, ("b", 11): 900.0}
    values |= {("b", s): 10.0 * s for s in range(6)} | {("a", s): 10.0 * s + d[s] for s in range(6)}
    table = summary(values).sample(frac=1.0, random_state=0)
    row = only_row(compare_optimizers(table, "test_accuracy", "a", "b", ">"))
    assert_paired_interval(row, d)
    assert row["verdict"] == "reproduced"


def test_pairing_gives_another_verdict_than_an_unpaired_comparison():
    """Seeds differ much more than the optimizers: seed by seed a is consistently above b, which
    an unpaired (pooled two-sample) interval cannot see, and which pairing the runs of
    different seeds destroys."""
    b = np.array([60.0, 75.0, 90.0, 66.0, 81.0, 70.0])
    a = b + np.array([0.1, 0.12, 0.09, 0.11, 0.1, 0.13])
    row = only_row(
        compare_optimizers(summary(pairs(list(a), list(b))), "test_accuracy", "a", "b", ">")
    )
    assert row["verdict"] == "reproduced"
    pooled = np.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2)
    half = student_t.ppf(0.975, 10) * pooled * np.sqrt(2 / 6)
    unpaired = (a.mean() - b.mean() - half, a.mean() - b.mean() + half)
    assert unpaired[0] < 0 < unpaired[1], "unpaired: inconclusive"
    shuffled = {("a", s): v for s, v in enumerate(a)} | {
        ("b", (s + 1) % 6): v for s, v in enumerate(b)
    }
    wrong = only_row(compare_optimizers(summary(shuffled), "test_accuracy", "a", "b", ">"))
    assert wrong["verdict"] == "inconclusive", "seeds paired with other seeds"


def test_diverged_runs_and_missing_values_are_left_out():
    a = [10.0, 11.0, 12.5, 13.0, 14.0, 15.0, 16.0, 17.0]
    values = pairs(a, [9.0, 9.5, 11.0, 8.0, 20.0, 14.2, 15.1, 15.8])
    values[("b", 3)] = None  # a finished run without a value
    table = summary(values, diverged=frozenset({("a", 4)}))
    row = only_row(compare_optimizers(table, "test_accuracy", "a", "b", ">"))
    assert_paired_interval(row, [1.0, 1.5, 1.5, 0.8, 0.9, 1.2])
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


def test_too_few_pairs_for_the_exact_test_is_inconclusive():
    """Two pairs far apart: the t-test says p < 0.05, the sign-flip test cannot go below 0.5."""
    row = only_row(
        compare_optimizers(summary(pairs([10.0, 20.0], [0.0, 9.9])), "test_accuracy", "a", "b", ">")
    )
    assert row["p_value"] < 0.05 and row["ci_low"] > 0 and row["sign_flip_p"] == 0.5
    assert (row["verdict"], row["reason"]) == ("inconclusive", "too few pairs")
    assert row["pairs_needed"] == min_pairs() == 6


@pytest.mark.parametrize(("alpha", "n"), [(0.05, 6), (0.01, 8), (0.1, 5), (0.5, 2)])
def test_min_pairs_is_where_the_exact_test_first_reaches_the_level(alpha, n):
    assert min_pairs(alpha) == n
    assert sign_flip_min_pvalue(n) <= alpha < sign_flip_min_pvalue(n - 1)


def test_tests_disagree_when_one_pair_points_the_other_way():
    """The t-interval excludes 0, but flipping the one negative difference is as extreme:
    the sign-flip p is at least 4/64 > 0.05."""
    b = [50.0, 60.0, 55.0, 52.0, 58.0, 61.0]
    d = [1.0, 1.1, 0.9, 1.05, 0.95, -0.2]
    row = only_row(
        compare_optimizers(summary(pairs(list(np.add(b, d)), b)), "test_accuracy", "a", "b", ">")
    )
    assert row["ci_low"] > 0 and row["sign_flip_p"] > 0.05
    assert (row["verdict"], row["reason"]) == ("inconclusive", "tests disagree")


def noncentral_t_power(effect: float, n: int, alpha: float = 0.05) -> float:
    """Power of the two-sided one-sample t-test, from scipy's noncentral t directly."""
    critical = student_t.ppf(1 - alpha / 2, n - 1)
    shift = effect * np.sqrt(n)
    return float(nct.sf(critical, n - 1, shift) + nct.cdf(-critical, n - 1, shift))


@pytest.mark.parametrize(("mean", "sd"), [(1.0, 1.0), (0.3, 1.0), (-2.0, 9.0), (3.0, 1.0)])
def test_pairs_needed_is_the_fewest_with_80_percent_power(mean, sd):
    n, note = pairs_needed(3, mean, sd, 0.05)
    assert note == "80 % power at α = 0.05"
    assert noncentral_t_power(abs(mean) / sd, n) >= 0.8
    if n > min_pairs():
        assert noncentral_t_power(abs(mean) / sd, n - 1) < 0.8
    else:
        assert n == min_pairs(), "never fewer than the exact test needs"


def test_pairs_needed_is_unbounded_without_a_difference_and_unsized_without_spread():
    assert pairs_needed(4, 0.0, 1.0, 0.05) == (None, "unbounded: mean difference 0")
    assert pairs_needed(4, 0.5, 0.0, 0.05) == (None, "no spread to size from")
    assert pairs_needed(1, 0.5, math.nan, 0.05)[0] is None
    row = only_row(
        compare_optimizers(
            summary(pairs([1.0, 2.0, 3.0], [1.2, 1.8, 3.0])), "test_accuracy", "a", "b", ">"
        )
    )
    assert row["mean_difference"] == pytest.approx(0.0, abs=1e-15)
    assert str(row.to_frame().T.astype({"pairs_needed": "Int64"})["pairs_needed"].dtype) == "Int64"


def test_holm_is_the_step_down_adjustment():
    p = [0.01, 0.04, math.nan, 0.03, 0.2]
    # By hand, over the 4 tested: sorted 0.01, 0.03, 0.04, 0.2 times 4, 3, 2, 1, running max.
    expected = [0.04, 0.09, math.nan, 0.09, 0.2]
    np.testing.assert_allclose(holm(p), expected)


def test_a_family_p_above_the_level_leaves_a_verdict_undecided():
    b = [50.0, 60.0, 55.0, 52.0, 58.0, 61.0]
    table = compare_optimizers(
        summary(pairs(list(np.add(b, SIX_UP)), b)), "test_accuracy", "a", "b", ">"
    )
    assert only_row(table)["verdict"] == "reproduced"
    adjusted = only_row(assess(table, 0.05, [0.06]))
    assert (adjusted["verdict"], adjusted["reason"]) == (
        "inconclusive",
        "not significant after Holm",
    )
    assert adjusted["pairs_needed"] >= min_pairs()


def test_architectures_compared_within_each_optimizer():
    """ViT − ResNet18 per optimizer, runs paired by seed."""
    rng = np.random.default_rng(1)
    rows = []
    for optimizer, shift in (("sgd", 0.5), ("adam", -0.5)):
        for seed in range(6):
            base = rng.normal()
            for arch, value in (("vit", base + shift + 0.01 * seed), ("resnet18", base)):
                rows.append(
                    {
                        "arch": arch,
                        "optimizer": optimizer,
                        "seed": seed,
                        "progress": 1.0,
                        "status": "ok",
                        "metric": "block_heterogeneity",
                        "value": value,
                    }
                )
    table = compare_architectures(pd.DataFrame(rows), "block_heterogeneity", "vit", "resnet18", ">")
    assert list(table["optimizer"]) == ["adam", "sgd"]
    assert (table["arch_a"] == "vit").all() and (table["n_pairs"] == 6).all()
    assert list(table["verdict"]) == ["contradicted", "reproduced"]
    assert table["mean_difference"].to_numpy() == pytest.approx([-0.475, 0.525])


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
    a small jitter, so that SGD − Adam is the paper's difference within 1 %. Block
    heterogeneity: the ViT's 0.3 above ResNet18's (below, with ``swap``) at every checkpoint."""
    paper = paper_differences()
    rng = np.random.default_rng(0)
    rows = []

    def add(arch, optimizer, seed, progress, metric, value):
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

    for claim in PAPER_CLAIMS:
        difference = paper[(claim.metric, claim.arch, 1.0)]
        for seed in range(seeds):
            shared = rng.normal(scale=10 * abs(difference))
            for optimizer in ("sgd", "adam"):
                final = shared + rng.normal(scale=0.01 * abs(difference))
                if (optimizer == "sgd") != swap:
                    final += difference
                add(claim.arch, optimizer, seed, 0.0, claim.metric, shared)
                add(claim.arch, optimizer, seed, 1.0, claim.metric, final)
    for seed in range(seeds):
        for progress in (0.0, 1.0):
            resnet = rng.uniform(0.1, 0.2)
            vit = resnet + (-0.3 if swap else 0.3) + rng.normal(scale=0.01)
            for optimizer in ("sgd", "adam"):
                add("resnet18", optimizer, seed, progress, "block_heterogeneity", resnet)
                add("vit", optimizer, seed, progress, "block_heterogeneity", vit)
    return pd.DataFrame(rows)


COLUMNS = [
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


def test_claims_reproduced_from_per_seed_values_that_follow_the_paper():
    table = check_claims(claim_summary(seeds=6))
    assert list(table.columns) == COLUMNS
    assert list(dict.fromkeys(table["claim"])) == [claim.statement for claim in CLAIMS]
    final = table[table["progress"] == 1.0]
    assert (final["family"] == "primary").all() and (final["verdict"] == "reproduced").all()
    assert len(final) == len(PAPER_CLAIMS) + 2, "the architecture claim: a row per optimizer"
    assert (final["n_pairs"] == 6).all() and final["reason"].isna().all()
    mine = final[final["optimizer"].isna()]
    assert ((mine["a"] == "sgd") & (mine["b"] == "adam")).all()
    theirs = final[final["arch"].isna()]
    assert list(theirs["optimizer"]) == ["adam", "sgd"] and (theirs["a"] == "vit").all()
    # Holm across the primary family, by hand; the exploratory rows are not in it.
    p = final["p_value"].to_numpy()
    order = np.argsort(p)
    steps = np.maximum.accumulate(p[order] * (len(p) - np.arange(len(p))))
    expected = np.empty_like(p)
    expected[order] = np.minimum(steps, 1.0)
    np.testing.assert_allclose(final["p_adjusted"], expected, rtol=1e-12)
    start = table[table["progress"] == 0.0]
    assert (start["family"] == "exploratory").all() and start["p_adjusted"].isna().all()
    ours = start[start["optimizer"].isna()]
    assert (ours["mean_difference"] == 0).all() and (ours["reason"] == "no spread").all()
    assert (ours["pairs_needed_note"] == "unbounded: mean difference 0").all()
    paper = paper_differences()
    for _, row in table[table["optimizer"].isna()].iterrows():
        assert row["paper_difference"] == pytest.approx(
            paper[(row["metric"], row["arch"], row["progress"])]
        )
    assert table.loc[table["arch"].isna(), "paper_difference"].isna().all()
    signs = np.sign(mine["paper_difference"]).to_numpy()
    np.testing.assert_array_equal(signs, mine["paper_direction"].map({">": 1, "<": -1}))


def test_claims_contradicted_when_swapped_and_inconclusive_with_few_seeds():
    swapped = check_claims(claim_summary(seeds=6, swap=True))
    assert (swapped.loc[swapped["progress"] == 1.0, "verdict"] == "contradicted").all()
    single = check_claims(claim_summary(seeds=1))
    assert (single["verdict"] == "inconclusive").all() and (single["n_pairs"] == 1).all()
    assert (single["reason"] == "too few pairs").all() and single["pairs_needed"].isna().all()
    # Two seeds: the paired t-test rejects at the final checkpoint, the verdict does not.
    two = check_claims(claim_summary(seeds=2))
    final = two[two["progress"] == 1.0]
    assert (final["p_value"] < 0.05).any()
    assert (two["verdict"] == "inconclusive").all() and (two["reason"] == "too few pairs").all()
    sized = final["pairs_needed"].dropna()
    assert len(sized) and (sized >= min_pairs()).all()


def test_no_verdict_where_the_interval_is_a_point_or_pairs_are_too_few():
    """The done-when of issue 20, on a table mixing every case."""
    for seeds in (1, 2, 5, 6, 8):
        for swap in (False, True):
            table = check_claims(claim_summary(seeds=seeds, swap=swap))
            decided = table[table["verdict"] != "inconclusive"]
            assert (decided["ci_low"] != decided["ci_high"]).all()
            assert (decided["n_pairs"] >= min_pairs()).all()
            assert decided["reason"].isna().all()
            undecided = table[table["verdict"] == "inconclusive"]
            assert undecided["reason"].isin(REASONS).all()


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
    table = check_claims(claim_summary(seeds=6))
    lines = [line for line in claims_markdown(table).splitlines() if line.startswith("| ")]
    cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    assert len(cells) == 1 + len(table), "a header and a row per claim and checkpoint"
    assert cells[0][:4] == ["claim", "checkpoint", "ordering", "pairs"]
    assert [row[1] for row in cells[1:]] == ["100%"] * 10 + ["0%"] * 10, "primary first"
    row = table[(table["progress"] == 1.0) & (table["arch"] == "resnet18")].iloc[0]
    interval = f"{row['mean_difference']:.3g} [{row['ci_low']:.3g}, {row['ci_high']:.3g}]"
    p_values = [f"{row[c]:.3g}" for c in ("p_value", "p_adjusted", "sign_flip_p")]
    expected = [row["claim"], "100%", "sgd > adam (resnet18)", "6", interval, *p_values, "1.68"]
    assert expected + ["reproduced", "—"] in cells
    start = table[(table["progress"] == 0.0) & (table["arch"] == "resnet18")].iloc[0]
    shown = next(c for c in cells if c[:2] == [start["claim"], "0%"])
    assert shown[-2:] == ["(inconclusive: no spread; exploratory)", "unbounded: mean difference 0"]
    fig = claims_figure(table)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    panels = [c.statement for c in PAPER_CLAIMS] + [
        f"{CLAIMS[-1].statement} ({o} runs)" for o in ("adam", "sgd")
    ]
    assert len(visible) == len(panels)
    for ax, panel in zip(visible, panels, strict=True):
        assert ax.get_title().startswith(panel)
        rows = table[
            (
                table["claim"]
                + table["optimizer"].map(lambda o: f" ({o} runs)" if isinstance(o, str) else "")
            )
            == panel
        ]
        drawn = {container.lines[0].get_gid(): container for container in ax.containers}
        marks = rows["verdict"].where(rows["family"] == "primary", "exploratory")
        assert set(drawn) == set(marks) == {"reproduced", "exploratory"}
        for name, container in drawn.items():
            shown = rows[(marks == name).to_numpy()]
            _, y = container.lines[0].get_data()
            np.testing.assert_allclose(y, shown["mean_difference"])
            line = container.lines[0]
            if name == "exploratory":
                assert line.get_markerfacecolor() == "none"
                assert to_rgb(line.get_color()) == to_rgb("grey")
            else:
                assert to_rgb(line.get_color()) == pytest.approx(VERDICT_COLORS[name])
            segments = container.lines[2][0].get_segments()
            bars = [(s[0][1], s[1][1]) for s in segments if len(s)]
            expected = list(zip(shown["ci_low"], shown["ci_high"], strict=True))
            np.testing.assert_allclose(bars, expected)
