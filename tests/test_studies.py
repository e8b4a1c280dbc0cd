"""Every experiment is a study: the targets and paths of its tables and figures, from the plan
of a dry run (`snakemake --summary`), in seconds. The reduced workflow of test_reruns.py makes
a study's outputs and its report section."""

from __future__ import annotations

import pytest
import yaml

from conftest import SMOKE, copy_workflow, snakemake
from test_reruns import HESSIAN_METRICS

pytestmark = pytest.mark.workflow

# Any name, any archs, optimizers and seeds; and one without a Hessian.
STUDIES = {
    "my-study": {
        "dataset": "digits",
        "archs": ["vit"],
        "optimizers": ["sgd", "adam", "lion"],
        "seeds": [3],
        "hessian": "final",
    },
    "no_hessian": {
        "dataset": "digits",
        "archs": ["resnet18"],
        "optimizers": ["adam"],
        "seeds": [0],
        "hessian": "none",
    },
}
# The paper experiment's targets; all of them but paper_comparison and explanations are a
# study's too.
PAPER_TARGETS = {
    *(f"table{n}" for n in range(1, 6)),
    "table_block_heterogeneity",
    "table_gradient_heterogeneity",
    *(f"fig_{metric}" for metric in ["test_accuracy", *HESSIAN_METRICS]),
    "fig_block_gaps",
    "fig_accuracy_vs_metrics",
    "correlation",
    "fig_correlation",
    "provenance",
    "paper_comparison",
    "explanations",
}
WITHOUT_HESSIAN = {"table1", "fig_test_accuracy", "provenance"}


CONFIGFILES = ("--configfile", "workflow/profiles/smoke/experiment.yaml", "studies.yaml")


def planned_outputs(workdir, *targets: str) -> dict[str, list[str]]:
    """Rule -> its output files, from the plan of the targets."""
    result = snakemake(workdir, *SMOKE, "--summary", *targets, *CONFIGFILES)
    outputs: dict[str, list[str]] = {}
    for line in result.stdout.splitlines()[1:]:
        path, _, rule, *_ = line.split("\t")
        outputs.setdefault(rule, []).append(path)
    return outputs


def study_counterpart(path: str, study: str, target: str) -> str:
    """Where a study keeps what the paper experiment's ``target`` writes to ``path``."""
    if path.startswith("results/notebooks/"):
        return f"results/notebooks/{study}_{target}.ipynb"
    return path.replace("results/", f"results/studies/{study}/", 1)


def test_a_study_has_every_output_of_the_paper_experiment_under_its_own_folder(tmp_path):
    workdir = copy_workflow(tmp_path)
    (workdir / "studies.yaml").write_text(yaml.safe_dump({"experiments": STUDIES}))
    # A target per experiment (an unknown target would fail the plan).
    outputs = planned_outputs(workdir, *(f"study_{name}" for name in ["paper", *STUDIES]))
    notebooks = {
        rule for rule, files in outputs.items() if f"results/notebooks/{rule}.ipynb" in files
    }
    studies = tuple(f"{name}_" for name in STUDIES)
    # The explanations table reads the grid study's Ψ, so the paper experiment's targets plan it.
    assert "grid_generalization" in notebooks
    others = (*studies, "grid_")
    assert {rule for rule in notebooks if not rule.startswith(others)} == PAPER_TARGETS
    kinds = PAPER_TARGETS - {"paper_comparison", "explanations"}
    assert {rule for rule in notebooks if rule.startswith("my-study_")} == {
        f"my-study_{kind}" for kind in kinds
    }
    for kind in kinds:
        expected = [study_counterpart(path, "my-study", kind) for path in outputs[kind]]
        assert sorted(outputs[f"my-study_{kind}"]) == sorted(expected)
    assert {rule for rule in notebooks if rule.startswith("no_hessian_")} == {
        f"no_hessian_{kind}" for kind in WITHOUT_HESSIAN
    }
    planned = {path for files in outputs.values() for path in files}
    assert "results/summary/no_hessian/training.parquet" in planned
    assert "results/summary/no_hessian/hessian.parquet" not in planned


def test_a_study_named_to_take_the_paper_experiments_targets_stops(tmp_path):
    workdir = copy_workflow(tmp_path)
    studies = {"experiments": {"fig": STUDIES["no_hessian"] | {"hessian": "final"}}}
    (workdir / "studies.yaml").write_text(yaml.safe_dump(studies))
    result = snakemake(workdir, *SMOKE, "--dry-run", *CONFIGFILES, check=False)
    assert result.returncode != 0
    message = "config key experiments.fig: its targets ['fig_correlation'] are another experiment's"
    assert message in result.stdout + result.stderr
