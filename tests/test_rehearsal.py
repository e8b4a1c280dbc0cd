"""The dress rehearsal (`./run rehearsal`, workflow/profiles/rehearsal), to the end: the paper's
workflow with the paper's full-size models, channels-last and bf16 (where the CPU computes it
natively), a micro-batched and sharded Hessian and every notebook, on a CIFAR-10-format archive
fetched from 127.0.0.1."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import REPO
from infoopt.hessian.metrics import GLOBAL
from infoopt.rehearsal import TEST_SIZE, TRAIN_PER_BATCH, precision

pytestmark = pytest.mark.workflow

# Parameter tensors and parameters of the paper's models (tests/test_models.py counts them).
FULL_SIZE = {"resnet18": (62, 11_173_962), "vit": (74, 9_523_722)}
PAPER_RUNS = [(arch, optimizer) for arch in FULL_SIZE for optimizer in ("sgd", "adam")]


@pytest.fixture(scope="module")
def rehearsal(rehearsal_run) -> Path:
    """The finished rehearsal's folder (conftest.py runs it in the background)."""
    returncode, output = rehearsal_run.finish()
    assert returncode == 0, f"the rehearsal failed:\n{output}"
    return rehearsal_run.workdir


def test_the_archive_comes_through_the_download_path(rehearsal):
    log = (rehearsal / "logs/download/cifar10.log").read_text()
    assert "downloading http://127.0.0.1:" in log and "verified (md5 " in log
    data = np.load(rehearsal / "resources/data/cifar10.npz")
    assert data["x_train"].shape == (5 * TRAIN_PER_BATCH, 3, 32, 32)
    assert data["x_test"].shape == (TEST_SIZE, 3, 32, 32)


@pytest.mark.parametrize(("arch", "optimizer"), PAPER_RUNS)
def test_full_size_models_train_channels_last_in_the_cpus_precision(rehearsal, arch, optimizer):
    record = json.loads(
        (rehearsal / f"results/runs/cifar10/{arch}/{optimizer}/seed0/run.json").read_text()
    )
    assert record["status"] == "ok" and record["steps_done"] > 1
    assert record["spec"]["training"]["precision"] == precision()
    assert record["spec"]["training"]["checkpoints"] == [0, 1], "the profile's, merged"
    assert record["spec"]["training"]["channels_last"] is True
    tensors, parameters = FULL_SIZE[arch]
    for progress in ("0.00", "1.00"):
        table = pd.read_parquet(
            rehearsal / f"results/runs/cifar10/{arch}/{optimizer}/seed0/hessian/{progress}.parquet"
        )
        blocks = table[table["block"] != GLOBAL]
        assert len(blocks) == tensors and blocks["numel"].sum() == parameters
        assert blocks[["k", "subtrace", "lambda_min", "lambda_max"]].notna().all().all()
        # A sub-Hessian of exact zeros (both coordinates read a channel that a trained ReLU
        # network keeps dead on these images) has no entropy gap; every other has one.
        zero = (blocks["lambda_min"] == 0) & (blocks["lambda_max"] == 0)
        assert zero.sum() < len(blocks) / 4, "most blocks have curvature"
        assert blocks.loc[~zero, "gap"].notna().all() and blocks.loc[zero, "gap"].isna().all()
        assert table.loc[table["block"] == GLOBAL, "status"].item() == "ok"


def test_hessians_are_micro_batched_and_sharded(rehearsal):
    logs = sorted((rehearsal / "logs/hessian/cifar10").rglob("*.log"))
    shards = [log for log in logs if ".shard" in log.name]
    assert len(shards) == 2 * (len(logs) - len(shards)), "two shares and a merge per checkpoint"
    computed = set()
    for log in shards:
        text = log.read_text()
        # A share whose parts another job computed (a twin run's, under another name) restores
        # them all and builds no operator; every share that computes builds the rehearsed one.
        if "parts computed and stored" in text:
            assert "Hessian operator: 2 micro-batches of 2 images, 0 kept, 2 rebuilt" in text, log
            computed.add(log.relative_to(rehearsal / "logs/hessian/cifar10").parts[0])
        else:
            assert "parts restored from the store" in text, log
    assert computed == set(FULL_SIZE), "each full-size model's Hessian is computed"


def test_every_notebook_ran(rehearsal):
    executed = {
        Path(json.loads(path.read_text())["metadata"]["papermill"]["input_path"]).name
        for path in (rehearsal / "results/notebooks").glob("*.ipynb")
    }
    assert executed == {path.name for path in (REPO / "notebooks").glob("*.ipynb")}
    for name in ("table1", "table4", "lion_paired", "paper_claims"):
        assert (rehearsal / f"results/tables/{name}.csv").stat().st_size > 0
