"""The whole smoke workflow, end to end with Snakemake, in a temporary directory."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from importlib import metadata

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from conftest import (
    SMOKE,
    copy_workflow,
    report_variable,
    resumable_step,
    snakemake,
    snakemake_env,
)
from infoopt.checkpoint import load_checkpoint
from test_reruns import HESSIAN_METRICS

pytestmark = pytest.mark.workflow

RUN = "results/runs/digits/resnet18/sgd/seed0"


# The installed torch, as its distribution names it (without the local build tag).
TORCH = metadata.version("torch")


def test_smoke_run_finishes(smoke_run):
    """The one test that fails when the session's smoke run does (the tests that read its
    results skip), with the tail of Snakemake's log."""
    if smoke_run.failure is not None:
        pytest.fail(f"the smoke run failed, {smoke_run.failure}", pytrace=False)


def test_smoke_run_writes_table1(smoke):
    table = pd.read_csv(smoke / "results/tables/table1.csv")
    assert list(table.columns) == [
        "table",
        "metric",
        "arch",
        "optimizer",
        "progress",
        "value",
        "std",
        "n_seeds",
        "n_diverged",
    ]
    assert set(zip(table["arch"], table["optimizer"], strict=True)) == {
        ("resnet18", "sgd"),
        ("resnet18", "adam"),
        ("vit", "sgd"),
        ("vit", "adam"),
    }
    assert sorted(table["progress"].unique()) == [0.0, 1.0]
    assert (table["n_seeds"] == 2).all() and (table["n_diverged"] == 0).all()
    start = table[table["progress"] == 0].groupby("arch")["value"].nunique()
    assert (start == 1).all(), "optimizers of an architecture share their initial weights"
    final = table[table["progress"] == 1].set_index(["arch", "optimizer"])["value"]
    assert (final > 40).all(), f"every smoke run learns the digits: {final.to_dict()}"
    assert "| resnet18 | sgd" in (smoke / "results/tables/table1.md").read_text()
    assert (smoke / "results/notebooks/table1.ipynb").exists()


def test_smoke_optimizer_study_trains_muon_groups_and_a_torch_optimizer(smoke):
    """Muon for the ViT's hidden matrices with AdamW for the rest, and torch.optim.RAdam by its
    import path: their runs finish, record what trained what and with which package, and the
    study gets its tables with all four optimizers."""
    for arch in ("resnet18", "vit"):
        muon = json.loads((smoke / f"results/runs/digits/{arch}/muon/seed0/run.json").read_text())
        assert muon["status"] == "ok"
        assert muon["spec"]["algorithm"] == "torch.optim.Muon+adamw"
        groups = muon["parameter_groups"]
        # ResNet18's hidden weights are convolution kernels, which Muon does not take.
        expected = {"hidden", "rest"} if arch == "vit" else {"rest"}
        assert set(groups.values()) == expected
        assert groups[f"{'head' if arch == 'vit' else 'fc'}.weight"] == "rest"
        radam = json.loads((smoke / f"results/runs/digits/{arch}/radam/seed0/run.json").read_text())
        assert radam["status"] == "ok"
        assert radam["spec"]["algorithm"] == "torch.optim.RAdam"
        assert radam["spec"]["package"] == {"distribution": "torch", "version": TORCH}
    table = pd.read_csv(smoke / "results/studies/optimizer_study/tables/table1.csv")
    assert set(table["optimizer"]) == {"sgd", "adam", "muon", "radam"}
    runs = pd.read_parquet(smoke / "results/summary/optimizer_study/runs.parquet")
    packages = runs.set_index(["arch", "optimizer"])["optimizer_package"]
    assert packages[("vit", "radam")] == f"torch {TORCH}"
    assert packages[("vit", "sgd")] == "infoopt"


def test_smoke_timm_vit_trains_and_gets_its_entropy_gap(smoke):
    """A timm ViT named by config alone: it trains on digits' shape, run.json lists its
    tensors, and the optimizer study's Table 4 holds its final entropy gaps."""
    run = json.loads((smoke / "results/runs/digits/tvit/sgd/seed0/run.json").read_text())
    assert run["status"] == "ok"
    model = run["spec"]["model"]
    assert (model["name"], model["options"]["name"]) == ("timm", "vit_tiny_patch16_224")
    assert (model["num_classes"], model["in_channels"], model["image_size"]) == (10, 1, 8)
    tensors = [name for name, _ in run["model_parameters"]["tensors"]]
    assert "blocks.0.attn.qkv.weight" in tensors and tensors[-1] == "head.bias"
    table = pd.read_csv(smoke / "results/studies/optimizer_study/tables/table4.csv")
    final = table[(table["progress"] == 1.0) & (table["arch"] == "tvit")]
    assert set(final["optimizer"]) == {"sgd", "adam", "muon", "radam"}
    assert np.isfinite(final["value"]).all() and (final["value"] > 0).all()


GRID_STUDY = "results/studies/grid"


def test_smoke_grid_study_ranks_the_metrics(smoke):
    """The smoke profile's grid: SGD's lr x batch size (2 x 2, weight decay fixed) and Adam at
    one point, on ResNet18 at seed 0."""
    runs = pd.read_csv(smoke / f"{GRID_STUDY}/tables/generalization_runs.csv")
    assert len(runs) == 5 and set(runs["base_optimizer"]) == {"sgd", "adam"}
    gap = runs["train_accuracy"] - runs["test_accuracy"]
    assert (runs["generalization_gap"] - gap).abs().max() < 1e-9
    record = json.loads(
        (
            smoke / "results/runs/digits/resnet18/sgd-batch_size128-lr0p03-weight_decay0p0005"
            "/seed0/run.json"
        ).read_text()
    )
    assert record["spec"]["training"]["batch_size"] == 128
    assert record["spec"]["hparams"]["lr"] == 0.03

    table = pd.read_csv(smoke / f"{GRID_STUDY}/tables/generalization.csv")
    assert set(table["scope"]) == {"resnet18/sgd", "resnet18/adam", "pooled"}
    assert set(table["axis"]) == {"batch_size", "lr", "weight_decay", "psi"}
    assert set(table["metric"]) == set(HESSIAN_METRICS)
    assert set(table["target"]) == {"generalization_gap", "test_accuracy"}
    defined = table.dropna(subset=["tau"])
    assert (defined["tau"].abs() <= 1).all() and (defined["ci_low"] <= defined["ci_high"]).all()
    sgd = table[table["scope"] == "resnet18/sgd"].set_index(["metric", "target", "axis"])
    groups = sgd["n_groups"].unstack("axis")
    # Two groups along lr and along the batch size (fewer where a pair ties), none along the
    # fixed weight decay; Ψ averages what there is.
    assert (groups[["lr", "batch_size"]] <= 2).all().all()
    assert (groups["weight_decay"] == 0).all(), "one value: not an axis"
    assert (groups["psi"] == groups["lr"] + groups["batch_size"]).all()
    assert sgd.loc[("entropy_gap", "generalization_gap", "psi"), "n_groups"] > 0
    assert sgd["tau"].unstack("axis")["psi"].notna().any()
    assert table.loc[table["scope"] == "resnet18/adam", "n_groups"].eq(0).all()
    # Adam's single point joins no group: pooled is SGD's grid.
    psi = table[table["axis"] == "psi"].set_index(["scope", "metric", "target"])["tau"]
    pd.testing.assert_series_equal(psi.loc["pooled"], psi.loc["resnet18/sgd"], check_names=False)
    assert "Ψ (pooled)" in (smoke / f"{GRID_STUDY}/tables/generalization.md").read_text()
    assert (smoke / f"{GRID_STUDY}/figures/generalization.png").read_bytes()[:4] == b"\x89PNG"
    assert (smoke / f"{GRID_STUDY}/figures/generalization.pdf").stat().st_size > 0
    # A grid study has the tables, not the figures drawn per optimizer (a colour per point).
    assert (smoke / f"{GRID_STUDY}/tables/table4.csv").exists()
    assert not (smoke / f"{GRID_STUDY}/figures/entropy_gap.png").exists()


def test_report_holds_the_grid_study_with_its_caption(smoke_report):
    outputs = ["tables/generalization.csv", "tables/generalization_runs.csv"]
    outputs.append("figures/generalization.png")
    categories = report_variable(smoke_report, "categories")
    assert sorted(categories["Study grid"]["generalization"]) == sorted(
        f"{GRID_STUDY}/{path}" for path in outputs
    )
    caption = report_variable(smoke_report, "results")[f"{GRID_STUDY}/tables/generalization.csv"]
    assert "granulated Kendall" in caption["caption"]


def test_every_job_logged_and_benchmarked(smoke):
    last = (smoke / "logs/train/digits/vit/adam/seed1.log").read_text().strip().splitlines()[-1]
    assert re.search(r": ok, stored as [0-9a-f]{12}$", last), last
    benchmark = pd.read_csv(smoke / "logs/benchmarks/train/digits/vit/adam/seed1.tsv", sep="\t")
    assert benchmark["s"].iloc[0] > 0
    logs, benchmarks = smoke / "logs", smoke / "logs/benchmarks"
    jobs = {p.relative_to(logs).with_suffix("") for p in logs.rglob("*.log")}
    timed = {p.relative_to(benchmarks).with_suffix("") for p in benchmarks.rglob("*.tsv")}
    assert jobs <= timed, f"jobs without a benchmark: {sorted(jobs - timed)}"
    assert not list(smoke.glob("results/runs/**/.partial"))
    assert not list(smoke.glob("results/store/*/*.partial")), "every job's state was filed"


def test_rerun_has_nothing_to_do(smoke_copy):
    result = snakemake(smoke_copy, *SMOKE, "--dry-run")
    assert "Nothing to be done" in result.stdout + result.stderr


def test_bad_config_stops_before_any_job(tmp_path):
    workdir = copy_workflow(tmp_path)
    (workdir / "bad.yaml").write_text(yaml.safe_dump({"archs": {"vit": {"epoch": 3}}}))
    result = snakemake(workdir, *SMOKE, "--configfile", "bad.yaml", check=False)
    assert result.returncode != 0
    assert "archs.vit" in result.stderr and "'epoch' was unexpected" in result.stderr
    assert not (workdir / "results").exists()


def _train_pid(workdir, run_dir) -> int | None:
    found = subprocess.run(
        # Anchored at the interpreter, so that the job's `bash -c` wrapper is not matched.
        ["pgrep", "-f", rf"^\S*python\S* -m infoopt train .*--out-dir {run_dir}"],
        capture_output=True,
        text=True,
    ).stdout.split()
    return int(found[0]) if found else None


def test_killed_training_job_is_retried_and_resumes(smoke, tmp_path):
    """SIGKILL a training job; Snakemake retries it; it resumes to the uninterrupted weights."""
    workdir = copy_workflow(tmp_path)
    target = f"{RUN}/run.json"
    runner = subprocess.Popen(
        [sys.executable, "-m", "snakemake", *SMOKE, "--retries", "1", target],
        cwd=workdir,
        env=snakemake_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    killed = False
    deadline = time.monotonic() + 300
    while not killed and runner.poll() is None and time.monotonic() < deadline:
        if resumable_step(workdir / "results/store") > 0:
            pid = _train_pid(workdir, RUN)
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
                killed = True
        time.sleep(0.05)
    output, _ = runner.communicate(timeout=600)
    assert killed, f"the training job ended before it could be killed:\n{output}"
    assert runner.returncode == 0, output
    assert "resuming at step" in (workdir / "logs/train/digits/resnet18/sgd/seed0.log").read_text()
    ours = load_checkpoint(workdir / RUN / "ckpt/1.00.pt")["state_dict"]
    whole = load_checkpoint(smoke / RUN / "ckpt/1.00.pt")["state_dict"]
    assert all(torch.equal(ours[k], whole[k]) for k in whole)


def test_diverged_run_completes_the_workflow_and_is_marked(tmp_path):
    workdir = copy_workflow(tmp_path)
    overrides = {
        "experiments": {
            "paper": {
                "dataset": "digits",
                "archs": ["resnet18"],
                "optimizers": ["sgd", "explode"],
                "seeds": [0],
            }
        },
        "optimizers": {"explode": {"algorithm": "sgd", "hparams": {"lr": 1.0e8}}},
        "archs": {"resnet18": {"epochs": 2}},
    }
    (workdir / "diverge.yaml").write_text(yaml.safe_dump(overrides))
    # --configfile replaces the profile's config files, so the smoke experiment is named again.
    smoke = "workflow/profiles/smoke/experiment.yaml"
    # Targets go first: --configfile takes every argument after it.
    snakemake(workdir, "table1", *SMOKE, "--configfile", smoke, "diverge.yaml")
    record = json.loads(
        (workdir / "results/runs/digits/resnet18/explode/seed0/run.json").read_text()
    )
    assert record["status"] == "diverged"
    table = pd.read_csv(workdir / "results/tables/table1.csv").set_index(["optimizer", "progress"])
    assert table.loc[("explode", 1.0), "n_diverged"] == 1
    assert table.loc[("explode", 1.0), "n_seeds"] == 0
    assert table.loc[("sgd", 1.0), "n_diverged"] == 0
    assert "diverged" in (workdir / "results/tables/table1.md").read_text()


def test_workflow_passes_snakemake_lint(tmp_path):
    result = snakemake(copy_workflow(tmp_path), "--lint", "--workflow-profile", SMOKE[-1])
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr
