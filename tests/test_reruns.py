"""Single-target reruns, the report and the notebooks' reproducibility, on the session's smoke run.

Its DAG has every rule of the paper's, the Lion ablation's and the grid study's. It also has a
study (`optimizer_study`), an experiment that shares its SGD and Adam runs of our models with the
paper experiment and trains Muon, RAdam and a timm ViT of its own: it gets every table and figure
the paper experiment gets. The tests that edit the workflow do so on a copy of it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from conftest import SMOKE, report_variable, snakemake, snakemake_env

pytestmark = pytest.mark.workflow

EXPERIMENT = "workflow/profiles/smoke/experiment.yaml"
STUDY = "optimizer_study"
GRID = "grid"
HESSIAN_METRICS = [
    "positive_block_ratio",
    "abs_trace_sum",
    "entropy_gap",
    "entropy_gap_deviation",
    "top_eigenvalue",
    "hessian_trace",
    "block_heterogeneity",
    "gradient_heterogeneity",
]
TABLES = [f"table{n}" for n in range(1, 6)]
TABLES += ["table_block_heterogeneity", "table_gradient_heterogeneity"]
FIGURES = [f"fig_{m}" for m in ["test_accuracy", *HESSIAN_METRICS]]
FIGURES += ["fig_block_gaps", "fig_accuracy_vs_metrics", "fig_correlation"]


def of(experiment: str, *targets: str) -> list[str]:
    """An experiment's (a study's) same targets as the paper experiment's."""
    return [f"{experiment}_{target}" for target in targets]


def studied(*targets: str) -> list[str]:
    """The targets, and the study's same targets (the grid's are not all the same)."""
    return [*targets, *of(STUDY, *targets)]


def in_study(path: str) -> str:
    """Where the study keeps what the paper experiment keeps at ``path``."""
    return path.replace("results/", f"results/studies/{STUDY}/", 1)


@pytest.fixture(scope="module")
def workdir(smoke, tmp_path_factory):
    """A copy of the finished smoke workflow, which these tests edit."""
    return shutil.copytree(smoke, tmp_path_factory.mktemp("reruns") / "smoke", symlinks=True)


def planned_jobs(workdir, *args: str) -> dict[str, int]:
    """Rule name -> number of jobs of a dry run (empty when there is nothing to do)."""
    result = snakemake(workdir, *SMOKE, "--dry-run", *args)
    output = result.stdout + result.stderr
    if "Nothing to be done" in output:
        return {}
    stats = output.split("Job stats:", 1)[1]
    jobs = {}
    for name, count in re.findall(r"^(\S+)\s+(\d+)$", stats, flags=re.MULTILINE):
        if name == "total":
            break
        jobs[name] = int(count)
    return jobs


@pytest.fixture
def edited(workdir):
    """Change a notebook's text (Snakemake ignores a new mtime when the content is unchanged),
    and put the original back afterwards."""
    saved = {}

    def edit(relative: str) -> None:
        path = workdir / relative
        saved[path] = path.read_bytes()
        notebook = json.loads(saved[path])
        notebook["cells"][0]["source"] += "\n\nEdited."
        path.write_text(json.dumps(notebook, indent=1))

    yield edit
    for path, content in saved.items():
        path.write_bytes(content)


def test_named_targets_run_alone(workdir):
    targets = [*TABLES, "paper_comparison", *FIGURES, "correlation", "provenance"]
    assert planned_jobs(workdir, "--force", *targets) == dict.fromkeys(targets, 1)


def test_a_changed_table_notebook_reruns_its_tables_alone(workdir, edited):
    edited("notebooks/paper_table.ipynb")
    expected = [*studied(*TABLES), *of(GRID, *TABLES), "paper_comparison", "all"]
    assert planned_jobs(workdir) == dict.fromkeys(expected, 1)


def test_a_changed_figure_notebook_reruns_its_figures_alone(workdir, edited):
    edited("notebooks/fig_progress.ipynb")
    progress_figures = [f"fig_{m}" for m in ["test_accuracy", *HESSIAN_METRICS]]
    # A grid study has no figures drawn per optimizer.
    assert planned_jobs(workdir) == dict.fromkeys([*studied(*progress_figures), "all"], 1)


def test_a_changed_hessian_option_reruns_hessian_and_what_reads_it(workdir):
    path = workdir / EXPERIMENT
    original = path.read_text()
    changed = yaml.safe_load(original)
    changed["hessian"]["probes"] = 6
    path.write_text(yaml.safe_dump(changed))
    try:
        jobs = planned_jobs(workdir)
    finally:
        path.write_text(original)
    readers = [*studied(*TABLES[1:], *FIGURES[1:], "correlation"), "paper_comparison", "all"]
    readers.append("explanations")
    readers += [*of(GRID, *TABLES[1:], "correlation", "fig_correlation", "generalization")]
    readers.append("lion_hessian")
    # Every checkpoint (2) of the paper experiment's 8 runs, the last of the ablation's 3, of the
    # grid's 5 and of the study's 8 of its own (its SGD and Adam runs of our models are the
    # paper experiment's: their Hessian is measured once, but each of the 4 experiments collects
    # its own summary).
    hessians = 8 * 2 + 3 + 5 + 8
    assert jobs == {"hessian": hessians, "collect_hessian": 4} | dict.fromkeys(readers, 1)


def test_a_study_gets_every_table_and_figure_from_the_runs_it_shares(workdir):
    tables = [*TABLES, "correlation", "provenance"]
    figures = ["test_accuracy", *HESSIAN_METRICS, "block_gaps", "accuracy_vs_metrics"]
    figures += ["correlation"]
    paths = [f"results/tables/{name}.{suffix}" for name in tables for suffix in ("csv", "md")]
    paths += [f"results/figures/{name}.{suffix}" for name in figures for suffix in ("pdf", "png")]
    for path in map(in_study, paths):
        assert (workdir / path).stat().st_size > 0, path
    for target in [*TABLES, *FIGURES, "correlation", "provenance"]:
        assert (workdir / f"results/notebooks/{STUDY}_{target}.ipynb").stat().st_size > 0
    # Its summaries hold the shared runs' rows as the paper experiment's do, and its own.
    for kind in ("training", "hessian"):
        ours = pd.read_parquet(workdir / f"results/summary/{STUDY}/{kind}.parquet")
        paper = pd.read_parquet(workdir / f"results/summary/paper/{kind}.parquet")
        keys = ["arch", "optimizer", "seed", "progress", "metric"]
        shared = ours[ours["optimizer"].isin(["sgd", "adam"]) & (ours["arch"] != "tvit")]
        assert len(shared) > 0
        expected = paper.merge(shared[keys], on=keys)
        pd.testing.assert_frame_equal(
            shared.sort_values(keys).reset_index(drop=True),
            expected.sort_values(keys).reset_index(drop=True),
        )
        assert {"muon", "radam"} <= set(ours["optimizer"]) and "tvit" in set(ours["arch"])


def test_report_holds_every_table_and_figure_with_captions(smoke_report):
    categories = report_variable(smoke_report, "categories")
    tables = [
        f"results/tables/{name}.csv" for name in [*TABLES, "paper_comparison", "paper_claims"]
    ]
    tables.append("results/figures/paper_claims.png")
    tables += ["results/tables/explanations.csv", "results/figures/explanations.png"]
    progress = [f"results/figures/{m}.png" for m in ["test_accuracy", *HESSIAN_METRICS]]
    progress.append("results/figures/block_gaps.png")
    correlation = [
        "results/figures/accuracy_vs_metrics.png",
        "results/tables/correlation.csv",
        "results/figures/correlation.png",
    ]
    provenance = ["results/tables/provenance.csv", "results/tables/provenance.md"]
    study = {
        "tables": [in_study(f"results/tables/{name}.csv") for name in TABLES],
        "training progress": list(map(in_study, progress)),
        "correlation": list(map(in_study, correlation)),
        "provenance": list(map(in_study, provenance)),
    }
    ours = {
        "Paper tables": {"Other": sorted(tables)},
        "Extension": {"training progress": sorted(progress), "correlation": sorted(correlation)},
        "Provenance": {"Other": provenance},
        f"Study {STUDY}": {sub: sorted(files) for sub, files in study.items()},
    }
    # The ablation's and the other studies' files only need their captions here (the grid
    # study's generalization outputs are test_workflow.py's).
    others = {f"Study {GRID}"}
    assert set(categories) == {*ours, "Ablation", *others}
    assert {
        cat: {sub: sorted(files) for sub, files in categories[cat].items()} for cat in ours
    } == ours
    captions = {
        path: record["caption"] for path, record in report_variable(smoke_report, "results").items()
    }
    # Every file of every category has its caption, and only those.
    assert set(captions) == {
        path for subs in categories.values() for files in subs.values() for path in files
    }
    expected = {
        "results/tables/table4.csv": "Table 4 of the paper, from this run: entropy gap",
        "results/tables/paper_claims.csv": "Verdict: reproduced where the interval excludes 0",
        "results/figures/top_eigenvalue.png": "The top eigenvalue of the full Hessian (Lanczos)",
        "results/figures/test_accuracy.png": "The test accuracy (Table 1) against training",
        "results/figures/block_gaps.png": "The entropy gap of every parameter block",
        "results/figures/accuracy_vs_metrics.png": "The final test accuracy of every run",
        "results/tables/correlation.csv": "cluster bootstrap with",
        "results/figures/correlation.png": "A metric that explains generalization",
        "results/tables/provenance.csv": "What every run was made with",
    }
    expected |= {
        in_study("results/tables/table4.csv"): "Table 4 of the paper, from the experiment",
        in_study("results/figures/top_eigenvalue.png"): f"results/summary/{STUDY}/hessian",
    }
    for path, phrase in expected.items():
        assert phrase in captions[path], (path, captions[path])
    for name in ("top_eigenvalue", "block_gaps", "accuracy_vs_metrics"):
        path = f"results/figures/{name}.png"
        assert "Stars: the paper" in captions[path], "the paper's values on its experiment's"
        assert "Stars" not in captions[in_study(path)], "and on no study's"
    assert "Replication of Tan &amp; Huang (2025)" in smoke_report, "the workflow's description"


def test_notebooks_rerun_standalone_to_the_same_bytes(workdir, tmp_path):
    """papermill with explicit parameters, outside Snakemake, rewrites the same bytes."""
    summary = "results/summary/paper"
    commands = {
        "correlation": [
            "notebooks/correlation.ipynb",
            *("-p", "training", f"{summary}/training.parquet"),
            *("-p", "hessian", f"{summary}/hessian.parquet"),
            *("-p", "csv", str(tmp_path / "correlation.csv")),
            *("-p", "markdown", str(tmp_path / "correlation.md")),
        ],
        "table3": [
            "notebooks/paper_table.ipynb",
            *("-p", "table", "3", "-p", "metric", "abs_trace_sum", "-p", "digits", "4"),
            *("-p", "summary", f"{summary}/hessian.parquet"),
            *("-p", "csv", str(tmp_path / "table3.csv")),
            *("-p", "markdown", str(tmp_path / "table3.md")),
        ],
    }
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "papermill", notebook, str(tmp_path / f"{name}.ipynb")]
            + parameters
            + ["--no-progress-bar", "--cwd", str(workdir)],
            env=snakemake_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=workdir,
        )
        for name, (notebook, *parameters) in commands.items()
    ]
    for run in runs:
        output, _ = run.communicate(timeout=300)
        assert run.returncode == 0, output
    for name in ("correlation.csv", "correlation.md", "table3.csv", "table3.md"):
        assert (tmp_path / name).read_bytes() == (workdir / "results/tables" / name).read_bytes()
