"""The paper's table format: one row per (arch, optimizer, progress), mean over seeds.

Columns: those of the paper's own ``paper_tables.csv`` (``table, metric, arch, optimizer,
progress, value``) plus ``std`` (sample std over seeds), ``n_seeds`` (seeds that finished) and
``n_diverged`` (seeds whose run diverged before that checkpoint; they are left out of the mean).
"""

from __future__ import annotations

from importlib import resources

import pandas as pd

from infoopt.atomic import write_table, write_text

COLUMNS = [
    "table",
    "metric",
    "arch",
    "optimizer",
    "progress",
    "value",
    "std",
    "n_seeds",
    "n_diverged",
]
GROUP = ["arch", "optimizer", "progress"]


def paper_values() -> pd.DataFrame:
    """Every number of the paper's five tables (tidy, as in ``paper_tables.csv``)."""
    with resources.files("infoopt.report").joinpath("paper_tables.csv").open() as handle:
        return pd.read_csv(handle)


def metric_rows(long: pd.DataFrame, metric: str, finished: bool = False) -> pd.DataFrame:
    """The rows of ``metric`` in a long summary table (with ``finished``, only those of runs that
    had not diverged, with a value); a ValueError that names the table's metrics if none."""
    rows = long[long["metric"] == metric]
    if finished:
        rows = rows[rows["status"] == "ok"].dropna(subset=["value"])
    if rows.empty:
        raise ValueError(
            f"no values of metric {metric!r} (have: {sorted(long['metric'].unique())})"
        )
    return rows


def paper_table(long: pd.DataFrame, table: int, metric: str) -> pd.DataFrame:
    """Aggregate the long per-checkpoint table ``long`` into the paper's format for ``metric``."""
    rows = metric_rows(long, metric)
    ok = rows[rows["status"] == "ok"]
    grouped = ok.groupby(GROUP, sort=True)["value"].agg(value="mean", std="std", n_seeds="count")
    diverged = rows[rows["status"] != "ok"].groupby(GROUP).size().rename("n_diverged")
    result = (
        rows[GROUP]
        .drop_duplicates()
        .merge(grouped.reset_index(), on=GROUP, how="left")
        .merge(diverged.reset_index(), on=GROUP, how="left")
        .fillna({"n_seeds": 0, "n_diverged": 0})
        .astype({"n_seeds": "int64", "n_diverged": "int64"})
        .assign(table=table, metric=metric)
    )
    return result.sort_values(GROUP, ignore_index=True)[COLUMNS]


def _cell(row: pd.Series, digits: int) -> str:
    if row["n_seeds"] == 0:
        return "diverged"
    text = f"{row['value']:.{digits}f}"
    if row["n_seeds"] > 1:
        text += f" ± {row['std']:.{digits}f}"
    if row["n_diverged"]:
        text += f" ({row['n_diverged']} diverged)"
    return text


def to_markdown(table: pd.DataFrame, digits: int = 2) -> str:
    """A people-readable rendering: a row per (arch, optimizer), a column per checkpoint."""
    cells = table.assign(
        cell=table.apply(_cell, axis=1, digits=digits),
        checkpoint=[f"{100 * p:g}%" for p in table["progress"]],
    )
    wide = cells.pivot(index=["arch", "optimizer"], columns="checkpoint", values="cell")
    wide = wide[sorted(wide.columns, key=lambda c: float(c.rstrip("%")))]
    seeds = table.groupby(["arch", "optimizer"])["n_seeds"].max()
    number = table["table"].iloc[0]
    # The paper's tables have a number; the extra ones (the rivals) a name.
    name = f"Table {number}" if str(number).isdigit() else str(number)
    title = f"{name}: {table['metric'].iloc[0]} (mean ± std over seeds; "
    title += f"seeds per run: {', '.join(map(str, sorted(seeds.unique())))})"
    return f"{title}\n\n{wide.reset_index().to_markdown(index=False)}\n"


def write_paper_table(table: pd.DataFrame, csv: str, markdown: str, digits: int = 2) -> None:
    write_table(table, csv)
    write_text(to_markdown(table, digits), markdown)
