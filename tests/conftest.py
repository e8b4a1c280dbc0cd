"""Shared fixtures: the repository's paths and a prepared digits dataset."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


@pytest.fixture(autouse=True)
def restore_torch_threads():
    """Commands run in-process set torch's thread count (--threads); no test leaks it."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def private_store(tmp_path, monkeypatch):
    """Commands run in-process file their results in a store of the test's own."""
    monkeypatch.setenv("INFOOPT_STORE", str(tmp_path / "store"))


@pytest.fixture(scope="session")
def digits_npz(tmp_path_factory) -> Path:
    from infoopt.data import prepare

    folder = tmp_path_factory.mktemp("digits")
    return prepare("digits", folder / "raw", folder / "digits.npz")


@pytest.fixture
def paper_config() -> dict:
    return yaml.safe_load((REPO / "config.yaml").read_text())


@pytest.fixture
def smoke_config(paper_config) -> dict:
    """config.yaml with the smoke profile's experiment merged over it, as Snakemake does."""
    from snakemake.utils import update_config

    smoke = yaml.safe_load((REPO / "workflow/profiles/smoke/experiment.yaml").read_text())
    update_config(paper_config, smoke)
    return paper_config


WORKFLOW_FILES = ("Snakefile", "config.yaml", "workflow", "notebooks", "src", "envs")


def copy_workflow(destination: Path) -> Path:
    """Copy what the workflow needs (Snakefile, config, rules, notebooks, src) there."""
    import shutil

    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", ".ipynb_checkpoints")
    for name in WORKFLOW_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, destination / name, ignore=ignore)
        else:
            shutil.copy2(source, destination / name)
    return destination


def snakemake_env() -> dict[str, str]:
    """This environment, with this interpreter first on PATH (the rules call `python -m ...`)."""
    import os
    import sys

    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    # A workflow's jobs use its own store, results/store.
    env.pop("INFOOPT_STORE", None)
    return env


def snakemake(cwd: Path, *args: str, timeout: float = 900, check: bool = True):
    """Run Snakemake in ``cwd``, for at most ``timeout`` seconds."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "snakemake", *args],
        cwd=cwd,
        env=snakemake_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
        )
    return result


def resumable_step(root: Path) -> int:
    """The step a killed run would resume at, from the first resume state under ``root`` (a
    run's folder, or a result store); 0 before its state exists or once the run has ended and
    removed it."""
    import torch

    for state in root.glob("**/resume.pt"):
        try:
            return torch.load(state, weights_only=False)["state"]["step"]
        except FileNotFoundError:
            return 0
    return 0


SMOKE = ("--cores", "2", "--workflow-profile", "workflow/profiles/smoke")


@pytest.fixture(scope="session")
def smoke(tmp_path_factory) -> Path:
    """The smoke workflow, run once to the end; tests that change it work on a copy."""
    workdir = copy_workflow(tmp_path_factory.mktemp("smoke"))
    snakemake(workdir, *SMOKE, timeout=1800)
    return workdir


@pytest.fixture(scope="session")
def smoke_report(smoke, tmp_path_factory) -> str:
    """The HTML of `snakemake --report` of the finished smoke workflow."""
    report = tmp_path_factory.mktemp("report") / "report.html"
    result = snakemake(smoke, *SMOKE, "--report", str(report))
    assert "ERROR" not in result.stderr, "the captions are valid reStructuredText"
    return report.read_text()


def report_variable(html: str, name: str) -> dict:
    """A JSON object the report's HTML assigns to ``var <name>`` in ``<script id="<name>">``."""
    import json
    import re

    found = re.search(rf'<script id="{name}">\s*var {name} = (\{{.*?\}});\s*</script>', html, re.S)
    assert found, f"no {name} in the report"
    return json.loads(found.group(1))


@pytest.fixture
def smoke_copy(smoke, tmp_path) -> Path:
    """A copy of the finished smoke workflow (files, times and Snakemake's records)."""
    import shutil

    return Path(shutil.copytree(smoke, tmp_path / "smoke", symlinks=True))


@pytest.fixture(scope="session", autouse=True)
def slurm_runs(request, tmp_path_factory):
    """The Slurm tests' runs (tests/slurm_runs.py), started with the session's first test so
    that their minutes of waiting for Slurm overlap the other tests; None when the session runs
    no Slurm test or has no usable cluster (tests/test_slurm.py then skips, or fails in CI)."""
    from slurm_runs import SlurmRuns, wanted

    if not wanted(request.session.items):
        yield None
        return
    runs = SlurmRuns(tmp_path_factory)
    try:
        yield runs
    finally:
        runs.stop()
