"""``infoopt collect``: per-run outputs into the tidy summary tables the notebooks read."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "gather run directories into tidy parquet tables"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dirs", nargs="+", help="run directories (each with run.json)")
    parser.add_argument("--out-dir", required=True, help="where runs/training/history.parquet go")


def run(args: argparse.Namespace) -> None:
    from infoopt.atomic import write_table
    from infoopt.collect import collect_runs

    for name, table in collect_runs(args.run_dirs).items():
        path = Path(args.out_dir) / f"{name}.parquet"
        write_table(table, path)
        print(f"{path}: {len(table)} rows")
