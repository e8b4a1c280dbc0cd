"""What the runs were made with (code commit, torch build, device), for the report."""

from __future__ import annotations

import pandas as pd

from infoopt.collect import RUN_KEYS

PROVENANCE = ["git_commit", "torch", "device"]
RUN_COLUMNS = RUN_KEYS + [
    "status",
    "epochs",
    "total_steps",
    "wall_seconds",
    "hparams",
    "optimizer_package",
]
UNKNOWN = "unknown"


def run_provenance(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per run (``runs.parquet``): its keys, outcome, cost and provenance; a run made
    outside a git checkout has commit ``unknown``."""
    missing = sorted(set(RUN_COLUMNS + PROVENANCE) - set(runs.columns))
    if missing:
        raise ValueError(f"the runs table lacks {missing}")
    table = runs[RUN_COLUMNS + PROVENANCE].astype({column: object for column in PROVENANCE})
    return table.fillna({column: UNKNOWN for column in PROVENANCE}).sort_values(
        RUN_KEYS, ignore_index=True
    )


def provenance_summary(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per distinct (commit, torch, device): how many runs, of which diverged, and
    their total training time in hours."""
    table = run_provenance(runs)
    return (
        table.groupby(PROVENANCE, sort=True)
        .agg(
            runs=("seed", "size"),
            diverged=("status", lambda status: int((status != "ok").sum())),
            wall_hours=("wall_seconds", lambda seconds: seconds.sum() / 3600),
        )
        .reset_index()
    )


def to_markdown(runs: pd.DataFrame) -> str:
    summary = provenance_summary(runs)
    title = (
        f"Provenance of the {int(summary['runs'].sum())} runs "
        "(one row per distinct code commit, torch build and device)"
    )
    return f"{title}\n\n{summary.to_markdown(index=False, floatfmt='.3g')}\n"
