"""The Lion ablation: its statistics (against scipy and hand computations), the learning-rate
sweep (specs, selection, the train command taking the selected lr) and, marked ``workflow``, a
reduced ablation run end to end with Snakemake."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats

from conftest import SCHEMA, SMOKE, snakemake
from infoopt.cli import main
from infoopt.config import ConfigError, Run, init_spec, run_spec
from infoopt.report.ablation import (
    accuracy_table,
    hessian_table,
    kappa_figure,
    kappas,
    lr_sweep_table,
    paired_comparison,
    paired_t_pvalue,
    sign_flip_min_pvalue,
    sign_flip_pvalue,
    summary_table,
    t_interval,
)
from infoopt.sweep import (
    SweepRun,
    apply_selection,
    candidate_lrs,
    select_lr,
    selection_file,
    sweep_runs,
    sweep_spec,
)
from infoopt.validate import validate_config

# ------------------------------------------------------------------------------ statistics


def test_t_interval_matches_a_hand_computation():
    values = [91.2, 92.5, 90.8]
    mean = sum(values) / 3
    s = math.sqrt(sum((v - mean) ** 2 for v in values) / 2)
    half = stats.t.ppf(0.975, df=2) * s / math.sqrt(3)  # t_{0.975, 2} = 4.303
    assert t_interval(values) == pytest.approx((mean, mean - half, mean + half), rel=1e-12)
    low, high = stats.t.interval(0.9, df=2, loc=mean, scale=stats.sem(values))
    assert t_interval(values, confidence=0.9) == pytest.approx((mean, low, high), rel=1e-12)


def test_t_interval_of_too_few_values():
    assert t_interval([3.0])[0] == 3.0 and all(map(math.isnan, t_interval([3.0])[1:]))
    assert all(map(math.isnan, t_interval([])))
    with pytest.raises(ValueError, match="confidence"):
        t_interval([1.0, 2.0], confidence=95)


@pytest.mark.parametrize("n", [2, 3, 5, 10])
def test_paired_t_test_and_interval_are_scipys(n):
    rng = np.random.default_rng(n)
    x, y = rng.normal(90, 1, n), rng.normal(89.5, 1, n)
    expected = stats.ttest_rel(x, y)
    assert paired_t_pvalue(x - y) == pytest.approx(expected.pvalue, rel=1e-10)
    mean, low, high = t_interval(x - y)
    interval = expected.confidence_interval(0.95)
    assert (low, high) == pytest.approx((interval.low, interval.high), rel=1e-10)
    assert mean == pytest.approx(np.mean(x - y))


def test_paired_t_test_of_constant_differences():
    assert paired_t_pvalue([0.0, 0.0, 0.0]) == 1.0
    assert paired_t_pvalue([0.5, 0.5]) == 0.0
    assert math.isnan(paired_t_pvalue([0.5]))


@pytest.mark.parametrize("n", [2, 3, 4, 7])
def test_sign_flip_is_scipys_exact_permutation_test(n):
    rng = np.random.default_rng(100 + n)
    x, y = rng.normal(0.3, 1, n), rng.normal(0, 1, n)
    expected = stats.permutation_test(
        (x, y),
        lambda a, b, axis: np.mean(a - b, axis=axis),
        permutation_type="samples",
        n_resamples=np.inf,
        vectorized=True,
    )
    assert sign_flip_pvalue(x - y) == pytest.approx(expected.pvalue, rel=1e-12)


def test_sign_flip_by_hand():
    # All three differences positive: only the observed signs and their mirror are as extreme.
    assert sign_flip_pvalue([1.0, 2.0, 3.0]) == pytest.approx(2 / 8)
    assert sign_flip_min_pvalue(3) == pytest.approx(0.25)
    # Mean 0: every sign vector is at least as extreme.
    assert sign_flip_pvalue([1.0, -1.0]) == 1.0
    # |±1 ± 2 ± 4| >= |1 + 2 - 4| = 1 for every sign vector.
    assert sign_flip_pvalue([1.0, 2.0, -4.0]) == 1.0


def test_sign_flip_of_one_difference_or_a_mean_zero_up_to_rounding():
    # One difference: both of its signs are as extreme as it.
    assert sign_flip_pvalue([0.7]) == 1.0
    # The mean rounds to 1.4e-17, not 0: every sign vector is still as extreme.
    assert sign_flip_pvalue([0.5, -0.7, 0.1, 0.1]) == 1.0


def test_sign_flip_of_many_pairs_is_sampled_close_to_exact():
    rng = np.random.default_rng(7)
    x, y = rng.normal(0.4, 1, 18), rng.normal(0, 1, 18)
    exact = stats.permutation_test(
        (x, y),
        lambda a, b, axis: np.mean(a - b, axis=axis),
        permutation_type="samples",
        n_resamples=np.inf,
        vectorized=True,
    ).pvalue
    ours = sign_flip_pvalue(x - y)
    assert abs(ours - exact) < 5 * math.sqrt(exact * (1 - exact) / 2**16) + 1e-4
    assert sign_flip_pvalue(x - y) == ours, "seeded"


# ------------------------------------------------------------------------------ tables


def finals(values: dict[tuple[str, str, int], float], diverged=()) -> pd.DataFrame:
    """Final-checkpoint rows of a training summary from {(arch, optimizer, seed): value}."""
    return pd.DataFrame(
        [
            {
                "dataset": "digits",
                "arch": arch,
                "optimizer": optimizer,
                "seed": seed,
                "progress": 1.0,
                "status": "diverged" if (arch, optimizer, seed) in diverged else "ok",
                "metric": "test_accuracy",
                "value": math.nan if (arch, optimizer, seed) in diverged else value,
            }
            for (arch, optimizer, seed), value in values.items()
        ]
    )


def test_paired_comparison_pairs_runs_by_seed():
    values = {
        ("vit", "lion", 2): 80.0,
        ("vit", "lion_bayes", 0): 83.0,
        ("vit", "lion", 0): 81.0,
        ("vit", "lion_bayes", 1): 70.0,
        ("vit", "lion", 1): 79.0,
        ("vit", "lion_bayes", 2): 82.5,
    }
    table = paired_comparison(finals(values, diverged={("vit", "lion_bayes", 1)}), "lion")
    row = table.iloc[0]
    d = [83.0 - 81.0, 82.5 - 80.0]  # seed 1 left out: its lion_bayes run diverged
    assert (row["arch"], row["optimizer"], row["reference"]) == ("vit", "lion_bayes", "lion")
    assert row["n_pairs"] == 2 and row["difference"] == pytest.approx(np.mean(d))
    assert row["p_ttest"] == pytest.approx(stats.ttest_rel([83.0, 82.5], [81.0, 80.0]).pvalue)
    assert row["p_sign_flip"] == pytest.approx(0.5) and row["p_sign_flip_min"] == 0.5
    with pytest.raises(ValueError, match="'adamw' has no runs.*lion, lion_bayes"):
        paired_comparison(finals(values), "adamw")


def test_summary_table_leaves_out_and_counts_diverged_runs():
    values = {
        (a, o, s): 90.0 + s for a in ("vit", "resnet18") for o in ("b", "a") for s in (0, 1, 2)
    }
    table = summary_table(finals(values, diverged={("vit", "a", 2)}), order=["b", "a"])
    assert list(zip(table["arch"], table["optimizer"], strict=True)) == [
        ("resnet18", "b"),
        ("resnet18", "a"),
        ("vit", "b"),
        ("vit", "a"),
    ]
    vit_a = table.iloc[3]
    assert (vit_a["n_seeds"], vit_a["n_diverged"]) == (2, 1)
    assert (vit_a["mean"], vit_a["ci_low"]) == pytest.approx(t_interval([90.0, 91.0])[:2])


def runs_table(hparams: dict[str, dict], algorithms: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "arch": "resnet18",
                "optimizer": name,
                "seed": seed,
                "algorithm": algorithms[name],
                "hparams": json.dumps(hp),
            }
            for name, hp in hparams.items()
            for seed in (0, 1)
        ]
    )


def test_accuracy_table_reports_the_lr_used():
    values = {("resnet18", o, s): 90.0 + s for o in ("lion", "adamw") for s in (0, 1)}
    runs = runs_table(
        {"lion": {"lr": 1e-3}, "adamw": {"lr": 3e-3}}, {"lion": "lion", "adamw": "adamw"}
    )
    table = accuracy_table(finals(values), runs, order=["adamw", "lion"])
    assert list(table["optimizer"]) == ["adamw", "lion"]
    assert list(table["lr"]) == [3e-3, 1e-3] and list(table["algorithm"]) == ["adamw", "lion"]
    mixed = runs.copy()
    mixed.loc[0, "hparams"] = json.dumps({"lr": 5e-3})
    with pytest.raises(ValueError, match="different lrs"):
        accuracy_table(finals(values), mixed)


def test_kappa_figure_draws_lion_as_the_limit():
    names = {"lion": "lion", "k1": "lion_tanh", "k3": "lion_tanh"}
    runs = runs_table({"lion": {}, "k1": {"kappa": 1.0}, "k3": {"kappa": 3.0}}, names)
    assert kappas(runs).to_dict() == {"k1": 1.0, "k3": 3.0}
    unrecorded = runs.copy()
    unrecorded.loc[3, "hparams"] = json.dumps({"lr": 1e-4})
    with pytest.raises(ValueError, match="run resnet18/k1/seed1 of lion_tanh records no kappa"):
        kappas(unrecorded)
    values = {("resnet18", o, s): 90.0 + s + (o == "lion") for o in names for s in (0, 1)}
    accuracy = accuracy_table(finals(values), runs)
    fig = kappa_figure(accuracy, runs, "lion")
    ax = fig.axes[0]
    lion = [line for line in ax.get_lines() if line.get_gid() == "lion"]
    assert lion and set(lion[0].get_ydata()) == {91.5}
    assert ax.get_xscale() == "log"


def test_hessian_table_takes_the_final_checkpoint():
    rows = finals({("vit", "lion", s): 1.0 + s for s in (0, 1)}).assign(metric="entropy_gap")
    early = rows.assign(progress=0.5, value=100.0)
    table = hessian_table(pd.concat([early, rows]), metrics=["entropy_gap"])
    assert table.iloc[0]["mean"] == pytest.approx(1.5) and table.iloc[0]["n_seeds"] == 2


# -------------------------------------------------------------------------------- sweeps


@pytest.fixture
def config(paper_config):
    return validate_config(paper_config, SCHEMA)


def test_sweep_runs_and_specs_of_the_ablation(config):
    runs = sweep_runs(config, "lion_ablation")
    assert len(runs) == 2 * 7 * 3
    assert candidate_lrs(config, "cifar10", "resnet18", "lion") == [3e-5, 1e-4, 3e-4]
    assert candidate_lrs(config, "cifar10", "vit", "adamw") == [3e-5, 1e-4, 3e-4]
    assert SweepRun("cifar10", "vit", "lion_bayes", "3e-06", 0) in runs
    spec = sweep_spec(config, SweepRun("cifar10", "resnet18", "lion_tanh_k3", "0.0003", 0))
    assert spec["hparams"] == {
        "lr": 3e-4,
        "betas": [0.9, 0.99],
        "weight_decay": 0.5,
        "kappa": 3.0,
        "foreach": None,
    }
    assert spec["training"]["holdout"] == {"fraction": 0.1, "seed": 0}
    assert spec["training"]["checkpoints"] == [1.0] and spec["training"]["epochs"] == 200
    assert selection_file(config, Run("cifar10", "vit", "lion", 2)) == (
        "results/sweep/cifar10/vit/lion/selected.json"
    )
    assert selection_file(config, Run("cifar10", "vit", "sgd", 0)) is None, "paper: not swept"
    with pytest.raises(ConfigError, match=r"lr 0\.001 .*\(candidates: 3e-05, 0\.0001, 0\.0003\)"):
        sweep_spec(config, SweepRun("cifar10", "resnet18", "lion", "0.001", 0))


def test_an_optimizer_swept_in_one_experiment_only_is_refused(paper_config):
    paper_config["experiments"]["paper"]["optimizers"].append("lion")
    with pytest.raises(ConfigError, match=r"lion on cifar10/resnet18 is also run by"):
        validate_config(paper_config, SCHEMA)


def test_sweep_keys_are_validated(paper_config):
    paper_config["experiments"]["lion_ablation"]["lr_sweep"]["holdout"] = 1.5
    with pytest.raises(ConfigError, match=r"lion_ablation\.lr_sweep\.holdout"):
        validate_config(paper_config, SCHEMA)


def sweep_record(folder, lr, status="ok", accuracy=90.0, loss=0.3, arch="resnet18"):
    """A sweep run's run.json (the fields select_lr reads)."""
    folder.mkdir(parents=True)
    final = {"progress": 1.0, "status": status}
    if status == "ok":
        final |= {"test_accuracy": accuracy, "test_loss": loss}
    spec = {
        "dataset": "digits",
        "arch": arch,
        "optimizer": "lion",
        "seed": 0,
        "model": {},
        "algorithm": "lion",
        "hparams": {"lr": lr},
        "training": {"holdout": {"fraction": 0.2, "seed": 0}},
    }
    steps = {"total_steps": 4, "steps_per_epoch": 2, "steps_done": 4, "wall_seconds": 1.0}
    record = {"status": status, "spec": spec, "checkpoints": [final], "provenance": {}} | steps
    (folder / "run.json").write_text(json.dumps(record))
    return folder


def test_select_lr_takes_the_best_validation_accuracy(tmp_path):
    runs = [
        sweep_record(tmp_path / "a", 1e-4, accuracy=80.0),
        sweep_record(tmp_path / "b", 3e-4, accuracy=91.0, loss=0.4),
        sweep_record(tmp_path / "c", 1e-3, accuracy=91.0, loss=0.3),
        sweep_record(tmp_path / "d", 3e-3, status="diverged"),
    ]
    selection = select_lr(runs)
    assert selection["hparams"] == {"lr": 1e-3}, "tie on accuracy: the lower loss"
    assert not selection["at_edge"]
    assert [c["lr"] for c in selection["candidates"]] == [1e-4, 3e-4, 1e-3, 3e-3]
    assert math.isnan(selection["candidates"][-1]["val_accuracy"])
    assert select_lr(runs[:2])["at_edge"]
    table = lr_sweep_table([selection])
    assert list(table["selected"]) == [False, False, True, False]


def test_select_lr_refuses_bad_candidate_sets(tmp_path):
    with pytest.raises(ValueError, match="every candidate lr of lion on digits/resnet18 diverged"):
        select_lr([sweep_record(tmp_path / "a", 1e-4, status="diverged")])
    with pytest.raises(ValueError, match="different"):
        select_lr(
            [sweep_record(tmp_path / "b", 1e-4), sweep_record(tmp_path / "c", 1e-3, arch="vit")]
        )


def test_apply_selection_records_its_source_and_checks_the_run(tmp_path):
    path = tmp_path / "selected.json"
    path.write_text(
        json.dumps(
            {"dataset": "digits", "arch": "vit", "optimizer": "lion", "hparams": {"lr": 0.01}}
        )
    )
    spec = {
        "dataset": "digits",
        "arch": "vit",
        "optimizer": "lion",
        "hparams": {"lr": 1e-4, "kappa": 2.0},
    }
    applied = apply_selection(spec, path)
    assert applied["hparams"] == {"lr": 0.01, "kappa": 2.0}
    assert applied["hparams_from"] == {"path": str(path), "hparams": {"lr": 0.01}}
    with pytest.raises(ValueError, match="arch 'vit', but the run's arch is 'resnet18'"):
        apply_selection(spec | {"arch": "resnet18"}, path)


def test_sweep_select_and_train_with_the_selected_lr(smoke_config, digits_npz, tmp_path):
    """The commands the workflow runs: a candidate trains on the training set minus the held-out
    part and is scored on that part; `select` picks; `train --hparams-from` uses the pick."""
    smoke_config["archs"]["resnet18"]["epochs"] = 1
    smoke_config["experiments"]["lion_ablation"]["lr_sweep"]["epochs"] = 1
    config = validate_config(smoke_config, SCHEMA)
    init = tmp_path / "init.pt"
    spec = json.dumps(init_spec(config, "digits", "resnet18", 0))
    assert main(["init", "--spec", spec, "--out", str(init)]) == 0
    candidates = [r for r in sweep_runs(config, "lion_ablation") if r.optimizer == "lion_tanh_k1"]
    assert len(candidates) == 2
    for run in candidates:
        out = tmp_path / run.directory
        spec = json.dumps(sweep_spec(config, run))
        args = ["--init", str(init), "--data", str(digits_npz), "--out-dir", str(out)]
        assert main(["train", "--spec", spec, *args, "--threads", "1"]) == 0
        record = json.loads((out / "run.json").read_text())
        held = round(0.2 * 1437)  # the smoke's holdout of the 1437 training digits
        correct = record["checkpoints"][-1]["test_accuracy"] * held / 100
        assert correct == pytest.approx(round(correct), abs=1e-9), "scored on the held-out part"
        assert [c["progress"] for c in record["checkpoints"]] == [1.0]

    selected = tmp_path / "selected.json"
    dirs = [str(tmp_path / run.directory) for run in candidates]
    assert main(["select", *dirs, "--out", str(selected)]) == 0
    lr = json.loads(selected.read_text())["hparams"]["lr"]
    assert lr in [float(run.lr) for run in candidates]

    final = tmp_path / "final"
    spec = json.dumps(run_spec(config, Run("digits", "resnet18", "lion_tanh_k1", 0)))
    args = ["--init", str(init), "--data", str(digits_npz), "--out-dir", str(final)]
    assert main(["train", "--spec", spec, *args, "--hparams-from", str(selected)]) == 0
    record = json.loads((final / "run.json").read_text())
    assert record["spec"]["hparams"]["lr"] == lr
    assert record["spec"]["hparams_from"] == {"path": str(selected), "hparams": {"lr": lr}}


# ------------------------------------------------------------------------------ workflow
# The session's smoke run (conftest.py) has the smoke profile's Lion ablation: three optimizers at
# one seed, each lr swept over two candidates of 2-epoch runs on a 20 % holdout.

ABLATION = ["lion", "lion_tanh_k1", "lion_tanh_k10"]
OUTPUTS = [
    "results/tables/lion_accuracy.csv",
    "results/tables/lion_accuracy.md",
    "results/tables/lion_paired.csv",
    "results/tables/lion_paired.md",
    "results/tables/lion_hessian.csv",
    "results/tables/lion_hessian.md",
    "results/tables/lion_lr_sweep.csv",
    "results/tables/lion_lr_sweep.md",
    "results/figures/lion_curves.pdf",
    "results/figures/lion_curves.png",
    "results/figures/lion_kappa.pdf",
    "results/figures/lion_kappa.png",
    "results/figures/lion_hessian.pdf",
    "results/figures/lion_hessian.png",
]
TARGETS = (
    "lion_accuracy",
    "lion_paired",
    "lion_hessian",
    "lion_lr_sweep",
    "lion_curves",
    "lion_kappa",
)


@pytest.mark.workflow
def test_ablation_outputs(smoke):
    for path in OUTPUTS:
        assert (smoke / path).stat().st_size > 0, path
    accuracy = pd.read_csv(smoke / "results/tables/lion_accuracy.csv")
    assert sorted(accuracy["optimizer"]) == sorted(ABLATION)
    assert (accuracy["n_seeds"] == 1).all() and (accuracy["mean"] > 30).all()
    paired = pd.read_csv(smoke / "results/tables/lion_paired.csv").set_index("optimizer")
    assert sorted(paired.index) == sorted(set(ABLATION) - {"lion"})
    training = pd.read_parquet(smoke / "results/summary/lion_ablation/training.parquet")
    final = training[(training["metric"] == "test_accuracy") & (training["progress"] == 1.0)]
    per_seed = final.pivot(index="seed", columns="optimizer", values="value")
    difference = (per_seed["lion_tanh_k1"] - per_seed["lion"]).mean()
    assert paired.loc["lion_tanh_k1", "difference"] == pytest.approx(difference)
    hessian = pd.read_csv(smoke / "results/tables/lion_hessian.csv")
    assert set(hessian["metric"]) == {"entropy_gap", "abs_trace_sum", "top_eigenvalue"}
    assert "lion_tanh_k1" in (smoke / "results/tables/lion_paired.md").read_text()


@pytest.mark.workflow
def test_final_runs_use_the_selected_lr(smoke):
    sweep = pd.read_csv(smoke / "results/tables/lion_lr_sweep.csv")
    assert len(sweep) == 2 * len(ABLATION)
    assert sweep.groupby("optimizer")["selected"].sum().eq(1).all()
    for optimizer in ABLATION:
        path = f"results/sweep/digits/resnet18/{optimizer}/selected.json"
        selected = json.loads((smoke / path).read_text())["hparams"]["lr"]
        assert selected in set(sweep.loc[sweep["optimizer"] == optimizer, "lr"])
        run = f"results/runs/digits/resnet18/{optimizer}/seed0/run.json"
        spec = json.loads((smoke / run).read_text())["spec"]
        assert spec["hparams"]["lr"] == selected
        assert spec["hparams_from"]["path"] == path
        candidate = next((smoke / f"results/sweep/digits/resnet18/{optimizer}").glob("lr*"))
        spec = json.loads((candidate / "seed0/run.json").read_text())["spec"]
        assert spec["training"]["holdout"] == {"fraction": 0.2, "seed": 0}
        assert spec["training"]["epochs"] == 2


@pytest.mark.workflow
def test_a_changed_sweep_reruns_what_depends_on_it(smoke_copy, tmp_path):
    result = snakemake(smoke_copy, *SMOKE, *TARGETS, "--dry-run")
    assert "Nothing to be done" in result.stdout + result.stderr
    changed = {"experiments": {"lion_ablation": {"lr_sweep": {"holdout": 0.25}}}}
    (tmp_path / "changed.yaml").write_text(yaml.safe_dump(changed))
    # A command-line --configfile replaces the profile's list: the smoke file is named again.
    files = ("--configfile", "workflow/profiles/smoke/experiment.yaml", tmp_path / "changed.yaml")
    result = snakemake(smoke_copy, *SMOKE, *TARGETS, "--dry-run", *map(str, files))
    jobs = _job_counts(result.stdout)
    # Two candidates per optimizer, and its final run at each of the smoke ablation's one seed.
    assert jobs["sweep"] == 2 * len(ABLATION) and jobs["select_lr"] == len(ABLATION)
    assert jobs["train"] == len(ABLATION)
    assert "init" not in jobs and "prepare" not in jobs


def _job_counts(output: str) -> dict[str, int]:
    """Snakemake's "Job stats" table of a dry run: rule -> number of jobs."""
    lines = output[output.index("Job stats:") :].splitlines()[3:]
    counts = {}
    for line in lines:
        parts = line.split()
        if len(parts) != 2 or parts[0] == "total":
            break
        counts[parts[0]] = int(parts[1])
    return counts
