"""``infoopt collect``: per-run outputs into the tidy summary tables the notebooks read."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "gather run directories or Hessian tables into tidy parquet tables"


def configure(parser: argparse.ArgumentParser) -> None:
    sources = parser.add_mutually_exclusive_group(required=True)
    sources.add_argument(
        "--runs", nargs="+", help="run directories (each with run.json and history.csv)"
    )
    sources.add_argument("--hessian", nargs="+", help="per-checkpoint tables of `infoopt hessian`")
    parser.add_argument("--out-dir", required=True, help="where the parquet tables go")


def run(args: argparse.Namespace) -> None:
    from infoopt.atomic import write_table
    from infoopt.collect import collect_hessian, collect_runs

    tables = collect_runs(args.runs) if args.runs else collect_hessian(args.hessian)
    for name, table in tables.items():
        path = Path(args.out_dir) / f"{name}.parquet"
        write_table(table, path)
        print(f"{path}: {len(table)} rows")
