"""Gather per-run outputs into tidy tables under ``results/summary/<experiment>/``."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from infoopt.records import RunRecord, RunSpec

RUN_KEYS = ["dataset", "arch", "optimizer", "seed"]
PROVENANCE_PACKAGES = ["torch", "cuda", "numpy", "pandas", "snakemake", "infoopt"]
CHECKPOINT_METRICS = ["test_accuracy", "test_loss", "train_accuracy", "train_loss"]
# Metric name in the summary tables (the paper's, where it has one) -> column of the Hessian
# table's global row (see infoopt.hessian.table).
HESSIAN_METRICS = {
    "positive_block_ratio": "positive_ratio",
    "abs_trace_sum": "sharpness",
    "entropy_gap": "gap_mean",
    "entropy_gap_deviation": "gap_std",
    "top_eigenvalue": "lambda_max",
    "hessian_trace": "trace",
    # The rival explanations (infoopt.hessian.heterogeneity).
    "block_heterogeneity": "block_heterogeneity",
    "gradient_heterogeneity": "gradient_heterogeneity",
}


def read_run_record(run_dir: str | Path) -> RunRecord:
    """A run's ``run.json`` (written by ``infoopt train``); a ValueError names an unreadable one."""
    return RunRecord.read(Path(run_dir) / "run.json")


def optimizer_package(spec: RunSpec) -> str:
    """The distribution and version of each algorithm the run named by import path (``torch
    2.14.1``); ``infoopt`` for ours; a module no distribution provides is named by its path."""

    def one(fields: dict) -> str:
        package = fields.get("package")
        if package is None:
            return "infoopt"
        if package["distribution"] is None:
            return f"{fields['algorithm']} (no distribution)"
        return f"{package['distribution']} {package['version']}"

    parts = [one(group) for group in (spec.groups or {}).values()] or [
        one({"algorithm": spec.algorithm, "package": spec.package})
    ]
    return ", ".join(dict.fromkeys(parts))


def with_groups(blocks: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """``blocks`` (``hessian_blocks.parquet``) with a column ``group``: the parameter group that
    trained each block (its parameter), from ``runs`` (``runs.parquet``); missing for a run of
    one algorithm. A block is one parameter tensor, named like it."""
    rows = [
        dict(zip(RUN_KEYS, keys, strict=True)) | {"block": block, "group": group}
        for *keys, groups in runs[RUN_KEYS + ["parameter_groups"]].itertuples(index=False)
        for block, group in (json.loads(groups) or {}).items()
    ]
    groups = pd.DataFrame(rows, columns=RUN_KEYS + ["block", "group"])
    return blocks.merge(groups, on=RUN_KEYS + ["block"], how="left", validate="many_to_one")


def collect_runs(run_dirs: Iterable[str | Path]) -> dict[str, pd.DataFrame]:
    """Tables ``runs`` (one row per run), ``training`` (long: a row per checkpoint and metric)
    and ``history`` (a row per run and epoch)."""
    runs, training, history = [], [], []
    for run_dir in map(Path, run_dirs):
        record = read_run_record(run_dir)
        keys = {key: getattr(record.spec, key) for key in RUN_KEYS}
        provenance = record.provenance
        runs.append(
            keys
            | {
                "status": record.status,
                "algorithm": record.spec.algorithm,
                "hparams": json.dumps(record.spec.groups or record.spec.hparams, sort_keys=True),
                "optimizer_package": optimizer_package(record.spec),
                "parameter_groups": json.dumps(record.parameter_groups, sort_keys=True),
                "epochs": record.spec.training["epochs"],
                "total_steps": record.total_steps,
                "wall_seconds": record.wall_seconds,
                "device": provenance["device_name"],
                "host": provenance.get("host"),
                "git_commit": provenance["git_commit"],
                "python": provenance.get("python"),
            }
            | {name: provenance["packages"].get(name) for name in PROVENANCE_PACKAGES}
        )
        for checkpoint in record.checkpoints:
            for metric in CHECKPOINT_METRICS:
                training.append(
                    keys
                    | {key: checkpoint[key] for key in ("progress", "step", "epoch", "status")}
                    | {"metric": metric, "value": checkpoint.get(metric, float("nan"))}
                )
        epochs = pd.read_csv(run_dir / "history.csv")
        history.append(epochs.assign(**keys)[RUN_KEYS + list(epochs.columns)])
    if not runs:
        raise ValueError("no runs to collect")
    training_table = pd.DataFrame(training).astype({"value": "float64"})
    return {
        "runs": pd.DataFrame(runs),
        "training": training_table.sort_values(
            RUN_KEYS + ["metric", "progress"], ignore_index=True
        ),
        "history": pd.concat(history, ignore_index=True),
    }


def collect_hessian(paths: Iterable[str | Path]) -> dict[str, pd.DataFrame]:
    """Tables ``hessian`` (long: a row per checkpoint and metric of Tables 2–5 and the global
    sharpness) and ``hessian_blocks`` (every block of every checkpoint)."""
    from infoopt.hessian.table import GLOBAL

    tables = [pd.read_parquet(path) for path in paths]
    if not tables:
        raise ValueError("no Hessian tables to collect")
    blocks = pd.concat(tables, ignore_index=True)
    identity = RUN_KEYS + ["progress", "status"]
    summary = blocks[blocks["block"] == GLOBAL]
    long = summary.melt(
        id_vars=identity,
        value_vars=list(HESSIAN_METRICS.values()),
        var_name="column",
        value_name="value",
    )
    long["metric"] = long["column"].map({column: name for name, column in HESSIAN_METRICS.items()})
    long = long.astype({"value": "float64"})[identity + ["metric", "value"]]
    return {
        "hessian": long.sort_values(RUN_KEYS + ["metric", "progress"], ignore_index=True),
        "hessian_blocks": blocks[blocks["block"] != GLOBAL].reset_index(drop=True),
    }
