"""The paper-format tables, the comparison with the paper, and the collection of runs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from infoopt.collect import collect_runs, with_groups
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


# The numbers the paper's text states (its abstract and introduction; PAPER.md §1), typed in
# apart from paper_tables.csv, which transcribes its tables.
PAPER_TEXT = {
    (1, "resnet18", "sgd"): 95.21,
    (1, "resnet18", "adam"): 93.53,
    (1, "vit", "adam"): 87.21,
    (1, "vit", "sgd"): 83.23,
    (4, "resnet18", "sgd"): 0.57,
    (4, "resnet18", "adam"): 1.48,
    (4, "vit", "adam"): 0.32,
    (4, "vit", "sgd"): 0.34,
}
# Parameter tensors, the blocks whose positive fraction Table 2 gives (PAPER.md §3).
BLOCKS = {"resnet18": 62, "vit": 74}


def paper_series() -> pd.Series:
    return paper_values().set_index(["table", "arch", "optimizer", "progress"])["value"]


def test_paper_values_agree_with_the_papers_text():
    paper = paper_series()
    assert len(paper) == 5 * 2 * 2 * 6, "five tables, two archs, two optimizers, six checkpoints"
    for (table, arch, optimizer), value in PAPER_TEXT.items():
        assert paper[(table, arch, optimizer, 1.0)] == value, (table, arch, optimizer)


def test_paper_values_have_the_structure_the_paper_states():
    paper = paper_series()
    for (table, arch, optimizer, progress), value in paper.items():
        if progress == 0.0:
            other = "adam" if optimizer == "sgd" else "sgd"
            assert value == paper[(table, arch, other, 0.0)], "both optimizers start alike"
        if table == 2:
            blocks = value * BLOCKS[arch]
            assert abs(blocks - round(blocks)) < BLOCKS[arch] * 5e-5, (arch, optimizer, progress)
    for arch in BLOCKS:
        assert paper[(3, arch, "adam", 1.0)] > paper[(3, arch, "sgd", 1.0)], "Adam is sharper"


def test_side_by_side_puts_ours_beside_the_papers():
    """Ours, shuffled and each off the paper's by a value of its own, lands on its own key."""
    paper = paper_values()
    offset = np.arange(len(paper)) + 1.0
    ours = paper.assign(value=paper["value"] + offset, std=np.nan, n_seeds=1, n_diverged=0)
    merged = side_by_side(ours.sample(frac=1.0, random_state=0))
    keys = ["table", "metric", "arch", "optimizer", "progress"]
    expected = paper.assign(offset=offset)[keys + ["offset"]]
    merged = merged.merge(expected, on=keys, validate="one_to_one")
    assert len(merged) == len(paper)
    np.testing.assert_allclose(merged["ours"] - merged["paper"], merged["offset"])
    assert side_by_side(ours.iloc[:0])["ours"].isna().all(), "no runs: the paper's column alone"


def test_collect_runs_reads_records_and_histories(tmp_path):
    spec = {
        "dataset": "digits",
        "arch": "vit",
        "optimizer": "sgd",
        "seed": 3,
        "model": {},
        "algorithm": "sgd",
        "hparams": {"lr": 0.1},
        "training": {"epochs": 2},
    }
    record = {
        "status": "ok",
        "spec": spec,
        "total_steps": 4,
        "steps_per_epoch": 2,
        "steps_done": 4,
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


def test_runs_record_the_optimizer_package_and_the_group_of_each_block(tmp_path):
    """An optimizer by import path names its package; a grouped run's blocks get their group."""
    keys = {"dataset": "digits", "arch": "vit", "seed": 0}
    torch_package = {"distribution": "torch", "version": "2.14.1"}
    specs = {
        "sgd": {"algorithm": "sgd", "hparams": {"lr": 0.1}},
        "muon": {
            "algorithm": "torch.optim.Muon+adamw",
            "hparams": {},
            "groups": {
                "hidden": {
                    "algorithm": "torch.optim.Muon",
                    "hparams": {},
                    "package": torch_package,
                },
                "rest": {"algorithm": "adamw", "hparams": {}},
            },
        },
        "mine": {
            "algorithm": "mine.Opt",
            "hparams": {},
            "package": {"distribution": None, "version": None},
        },
    }
    groups = {"muon": {"a.weight": "hidden", "a.bias": "rest"}}
    run_dirs = []
    for name, optimizer in specs.items():
        run = tmp_path / name
        run.mkdir()
        record = {
            "status": "ok",
            "spec": keys | {"optimizer": name, "model": {}, "training": {"epochs": 1}} | optimizer,
            "total_steps": 1,
            "steps_per_epoch": 1,
            "steps_done": 1,
            "wall_seconds": 1.0,
            "provenance": {"device_name": "cpu", "git_commit": "abc", "packages": {}},
            "checkpoints": [{"progress": 1.0, "step": 1, "epoch": 1.0, "status": "ok"}],
            "parameter_groups": groups.get(name),
        }
        (run / "run.json").write_text(json.dumps(record))
        pd.DataFrame({"epoch": [1]}).to_csv(run / "history.csv", index=False)
        run_dirs.append(run)
    runs = collect_runs(run_dirs)["runs"].set_index("optimizer")
    assert runs.loc["sgd", "optimizer_package"] == "infoopt"
    assert runs.loc["muon", "optimizer_package"] == "torch 2.14.1, infoopt"
    assert runs.loc["mine", "optimizer_package"] == "mine.Opt (no distribution)"
    blocks = pd.DataFrame(
        [keys | {"optimizer": name, "block": block} for name in specs for block in groups["muon"]]
    )
    joined = with_groups(blocks, runs.reset_index())
    assert joined[joined["optimizer"] == "muon"]["group"].tolist() == ["hidden", "rest"]
    assert joined[joined["optimizer"] != "muon"]["group"].isna().all()


def test_collect_names_an_unreadable_run(tmp_path):
    with pytest.raises(ValueError, match="run.json"):
        collect_runs([tmp_path])
