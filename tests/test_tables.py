"""The paper-format tables, the comparison with the paper, and the collection of runs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from infoopt.collect import collect_runs
from infoopt.report.claims import side_by_side
from infoopt.report.tables import COLUMNS, paper_table, paper_values, to_markdown


def long_table(values: dict[tuple[str, str, int, float], float | None]) -> pd.DataFrame:
    """A long per-checkpoint table; None marks a diverged checkpoint."""
    rows = [
        {
            "dataset": "d",
            "arch": a,
            "optimizer": o,
            "seed": s,
            "progress": p,
            "status": "diverged" if v is None else "ok",
            "metric": "test_accuracy",
            "value": np.nan if v is None else v,
        }
        for (a, o, s, p), v in values.items()
    ]
    return pd.DataFrame(rows)


def test_paper_table_means_over_seeds_and_counts_divergence():
    long = long_table(
        {
            ("resnet18", "sgd", 0, 1.0): 90.0,
            ("resnet18", "sgd", 1, 1.0): 94.0,
            ("resnet18", "sgd", 2, 1.0): None,
            ("vit", "adam", 0, 1.0): 80.0,
            ("vit", "adam", 0, 0.0): 10.0,
        }
    )
    table = paper_table(long, table=1, metric="test_accuracy")
    assert list(table.columns) == COLUMNS
    row = table.set_index(["arch", "optimizer", "progress"]).loc[("resnet18", "sgd", 1.0)]
    assert row["value"] == 92.0 and row["std"] == pytest.approx(np.std([90, 94], ddof=1))
    assert row["n_seeds"] == 2 and row["n_diverged"] == 1
    single = table.set_index(["arch", "optimizer", "progress"]).loc[("vit", "adam", 1.0)]
    assert single["n_seeds"] == 1 and np.isnan(single["std"])


def test_all_diverged_cell_is_marked():
    long = long_table({("vit", "sgd", 0, 1.0): None, ("vit", "sgd", 0, 0.0): 10.0})
    table = paper_table(long, table=1, metric="test_accuracy")
    final = table[table["progress"] == 1.0].iloc[0]
    assert final["n_seeds"] == 0 and final["n_diverged"] == 1 and np.isnan(final["value"])
    assert "diverged" in to_markdown(table)


def test_unknown_metric_is_named():
    with pytest.raises(ValueError, match="entropy_gap"):
        paper_table(long_table({("vit", "sgd", 0, 1.0): 1.0}), table=4, metric="entropy_gap")


def test_markdown_has_a_row_per_run_and_a_column_per_checkpoint():
    long = long_table({("vit", "sgd", s, p): 10 * p + s for s in (0, 1) for p in (0.0, 0.5, 1.0)})
    text = to_markdown(paper_table(long, table=1, metric="test_accuracy"), digits=1)
    assert "| vit    | sgd         | 0.5 ± 0.7 | 5.5 ± 0.7 | 10.5 ± 0.7 |" in text
    assert text.index("| 0%") < text.index("| 50%") < text.index("| 100%")
    assert text.startswith("Table 1: test_accuracy (mean ± std over seeds;")
    named = paper_table(long, table="Block heterogeneity", metric="test_accuracy")
    assert to_markdown(named).startswith("Block heterogeneity: test_accuracy (mean ± std")


def test_paper_values_are_the_papers():
    paper = paper_values().set_index(["table", "arch", "optimizer", "progress"])["value"]
    assert len(paper) == 120
    assert paper[(1, "resnet18", "sgd", 1.0)] == 95.21
    assert paper[(4, "vit", "adam", 1.0)] == 0.32


def test_side_by_side_puts_ours_beside_the_papers():
    """Fed the paper's numbers as ours, every value sits beside itself."""
    paper = paper_values().assign(std=np.nan, n_seeds=1, n_diverged=0)
    merged = side_by_side(paper)
    assert len(merged) == len(paper) and (merged["paper"] == merged["ours"]).all()


def test_collect_runs_reads_records_and_histories(tmp_path):
    spec = {
        "dataset": "digits",
        "arch": "vit",
        "optimizer": "sgd",
        "seed": 3,
        "algorithm": "sgd",
        "hparams": {"lr": 0.1},
        "training": {"epochs": 2},
    }
    record = {
        "status": "ok",
        "spec": spec,
        "total_steps": 4,
        "wall_seconds": 1.5,
        "provenance": {"device_name": "cpu", "git_commit": "abc", "packages": {"torch": "2"}},
        "checkpoints": [
            {
                "progress": 0.0,
                "step": 0,
                "epoch": 0.0,
                "status": "ok",
                "test_accuracy": 10.0,
                "test_loss": 2.3,
                "train_accuracy": 11.0,
                "train_loss": 2.2,
            },
            {"progress": 1.0, "step": 4, "epoch": 2.0, "status": "diverged"},
        ],
    }
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps(record))
    pd.DataFrame({"epoch": [1, 2], "test_accuracy": [50.0, 60.0]}).to_csv(
        run / "history.csv", index=False
    )
    tables = collect_runs([run])
    training = tables["training"].set_index(["progress", "metric"])
    assert training.loc[(0.0, "train_accuracy"), "value"] == 11.0
    assert np.isnan(training.loc[(1.0, "test_accuracy"), "value"])
    assert training.loc[(1.0, "test_accuracy"), "status"] == "diverged"
    assert (tables["history"]["seed"] == 3).all() and len(tables["history"]) == 2
    assert tables["runs"].iloc[0]["git_commit"] == "abc"


def test_collect_names_an_unreadable_run(tmp_path):
    with pytest.raises(ValueError, match="run.json"):
        collect_runs([tmp_path])
