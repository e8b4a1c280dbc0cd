"""Finished work is never lost: equivalent configurations plan nothing, results come back from
the store, and a damaged input is named without touching what is stored."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import pytest
import yaml

from conftest import SMOKE, snakemake

pytestmark = pytest.mark.workflow

EXPERIMENT = "workflow/profiles/smoke/experiment.yaml"
RUN = "results/runs/digits/resnet18/adam/seed0"
HESSIAN = f"{RUN}/hessian/1.00.parquet"


def planned(workdir: Path, *args: str) -> str:
    result = snakemake(workdir, *SMOKE, "--dry-run", *args)
    return result.stdout + result.stderr


def tree_state(folder: Path) -> dict[str, tuple[int, int, str]]:
    """(size, mtime, sha256) of every file under ``folder``."""
    return {
        str(path.relative_to(folder)): (
            path.stat().st_size,
            path.stat().st_mtime_ns,
            hashlib.sha256(path.read_bytes()).hexdigest(),
        )
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def reordered(value):
    """``value`` with every mapping's keys reversed and numbers respelled (1 -> 1.0)."""
    if isinstance(value, dict):
        return {key: reordered(value[key]) for key in reversed(list(value))}
    if isinstance(value, list):
        return [reordered(item) for item in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def test_readme_layering_plans_nothing(smoke_copy):
    """The README's way of layering a file over the smoke configuration, with nothing changed."""
    assert "Nothing to be done" in planned(smoke_copy, "--configfile", EXPERIMENT)


def test_reordered_and_respelled_configuration_plans_nothing(smoke_copy):
    for name in ("config.yaml", EXPERIMENT):
        config = yaml.safe_load((smoke_copy / name).read_text())
        text = yaml.safe_dump(reordered(config), sort_keys=False)
        (smoke_copy / name).write_text(text)
    # Defaults written out explicitly mean the same runs too, and so does a grid's values in
    # another order.
    (smoke_copy / "explicit.yaml").write_text(
        yaml.safe_dump(
            {
                "optimizers": {"sgd": {"algorithm": "sgd", "hparams": {"nesterov": False}}},
                "archs": {"resnet18": {"model": "resnet18", "warmup_epochs": 0.0}},
                "experiments": {"grid": {"grid": {"sgd": {"lr": [0.1, 0.03]}}}},
            }
        )
    )
    assert "Nothing to be done" in planned(smoke_copy)
    assert "Nothing to be done" in planned(smoke_copy, "--configfile", EXPERIMENT, "explicit.yaml")


def _log(workdir: Path, rule: str, run: str = "digits/resnet18/adam/seed0") -> str:
    return (workdir / f"logs/{rule}/{run}.log").read_text()


def test_changed_hparam_then_changed_back_retrains_nothing(smoke_copy):
    original = (smoke_copy / RUN / "ckpt/1.00.pt").read_bytes()
    (smoke_copy / "lr.yaml").write_text(
        yaml.safe_dump({"optimizers": {"adam": {"algorithm": "adam", "hparams": {"lr": 2.0e-3}}}})
    )
    snakemake(smoke_copy, f"{RUN}/run.json", *SMOKE, "--configfile", EXPERIMENT, "lr.yaml")
    assert (smoke_copy / RUN / "ckpt/1.00.pt").read_bytes() != original
    assert "stored as" in _log(smoke_copy, "train").splitlines()[-1]

    plan = planned(smoke_copy, f"{RUN}/run.json")
    assert "train" in plan, "Snakemake replans the run: its parameters changed back"
    snakemake(smoke_copy, f"{RUN}/run.json", *SMOKE)
    assert "restored from the store" in _log(smoke_copy, "train").splitlines()[-1]
    assert (smoke_copy / RUN / "ckpt/1.00.pt").read_bytes() == original

    # The edited run's result is kept until pruned; everything else stays in use.
    store = ["-m", "infoopt", "store"]
    listing = run_python(smoke_copy, *store, "list")
    assert listing.count("unused") == 1 and "lr 0.002" not in listing
    run_python(smoke_copy, *store, "prune", "--yes")
    assert "unused" not in run_python(smoke_copy, *store, "list")


def run_python(cwd: Path, *args: str) -> str:
    import subprocess

    from conftest import snakemake_env

    result = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=snakemake_env(), capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_upgraded_rules_and_newer_inputs_restore_from_the_store(smoke_copy):
    """A changed rule command and a touched input make Snakemake delete and rerun the outputs;
    the jobs place them again from the store instead of computing them."""
    before = tree_state(smoke_copy / RUN)
    for rule in ("train", "hessian"):
        path = smoke_copy / f"workflow/rules/{rule}.smk"
        path.write_text(path.read_text().replace("--threads {threads}", "--threads {threads} "))
    os.utime(smoke_copy / "results/init/digits/resnet18/seed0.pt")
    plan = planned(smoke_copy, HESSIAN)
    assert "train" in plan and "hessian" in plan
    snakemake(smoke_copy, HESSIAN, *SMOKE)
    assert "restored from the store" in _log(smoke_copy, "train").splitlines()[-1]
    hessian_log = (smoke_copy / "logs/hessian/digits/resnet18/adam/seed0/1.00.log").read_text()
    assert "restored from the store" in hessian_log.splitlines()[-1]
    after = tree_state(smoke_copy / RUN)
    assert {k: v[2] for k, v in after.items()} == {k: v[2] for k, v in before.items()}
    replaced = [k for k in after if not k.startswith("hessian/") or k == "hessian/1.00.parquet"]
    assert all(after[k][1] > before[k][1] for k in replaced), "placed as new files"
    assert "Nothing to be done" in planned(smoke_copy, HESSIAN)


def test_corrupt_data_is_named_and_the_store_is_untouched(smoke_copy):
    store = tree_state(smoke_copy / "results/store")
    data = smoke_copy / "resources/data/digits.npz"
    data.write_bytes(data.read_bytes()[:5000])
    result = snakemake(smoke_copy, f"{RUN}/run.json", *SMOKE, check=False)
    assert result.returncode != 0
    error = _log(smoke_copy, "train").strip().splitlines()[-1]
    assert error.startswith("infoopt train: error: array file resources/data/digits.npz is corrupt")
    assert "delete it" in error
    assert tree_state(smoke_copy / "results/store") == store

    data.unlink()
    snakemake(smoke_copy, f"{RUN}/run.json", *SMOKE)
    assert "restored from the store" in _log(smoke_copy, "train").splitlines()[-1]
    record = json.loads((smoke_copy / RUN / "run.json").read_text())
    assert record["status"] == "ok"
