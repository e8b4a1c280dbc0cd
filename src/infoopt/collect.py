"""Gather per-run outputs into tidy tables under ``results/summary/<experiment>/``."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

RUN_KEYS = ["dataset", "arch", "optimizer", "seed"]
PROVENANCE_PACKAGES = ["torch", "cuda", "numpy", "pandas", "snakemake", "infoopt"]
CHECKPOINT_METRICS = ["test_accuracy", "test_loss", "train_accuracy", "train_loss"]
# Metric name in the summary tables (the paper's, where it has one) -> column of the Hessian
# table's global row (see infoopt.hessian.metrics).
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


def read_run_record(run_dir: str | Path) -> dict:
    """A run's ``run.json`` (written by ``infoopt train``); a ValueError names an unreadable one."""
    path = Path(run_dir) / "run.json"
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: cannot read the run's record: {error}") from error


def collect_runs(run_dirs: Iterable[str | Path]) -> dict[str, pd.DataFrame]:
    """Tables ``runs`` (one row per run), ``training`` (long: a row per checkpoint and metric)
    and ``history`` (a row per run and epoch)."""
    runs, training, history = [], [], []
    for run_dir in map(Path, run_dirs):
        record = read_run_record(run_dir)
        keys = {key: record["spec"][key] for key in RUN_KEYS}
        provenance = record["provenance"]
        runs.append(
            keys
            | {
                "status": record["status"],
                "algorithm": record["spec"]["algorithm"],
                "hparams": json.dumps(record["spec"]["hparams"], sort_keys=True),
                "epochs": record["spec"]["training"]["epochs"],
                "total_steps": record["total_steps"],
                "wall_seconds": record["wall_seconds"],
                "device": provenance["device_name"],
                "host": provenance.get("host"),
                "git_commit": provenance["git_commit"],
                "python": provenance.get("python"),
            }
            | {name: provenance["packages"].get(name) for name in PROVENANCE_PACKAGES}
        )
        for checkpoint in record["checkpoints"]:
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
    from infoopt.hessian.metrics import GLOBAL

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
