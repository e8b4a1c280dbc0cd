"""``infoopt hessian``: one checkpoint's Hessian table (see ``infoopt.hessian.metrics``)."""

from __future__ import annotations

import argparse
import dataclasses

from infoopt.commands.common import add_execution_arguments, add_store_argument, apply_threads

HELP = "measure a checkpoint's Hessian: per-block spectra and entropy gaps, traces, top eigenvalue"
TYPES = {"int": int, "float": float, "str": str, "int | None": int}


def configure(parser: argparse.ArgumentParser) -> None:
    from infoopt.hessian.options import CHOICES, HessianOptions

    parser.add_argument("checkpoint", help="checkpoint file from `infoopt train`")
    parser.add_argument("--data", required=True, help="prepared dataset from `infoopt prepare`")
    parser.add_argument("--out", required=True, help="the table to write (.parquet)")
    parser.add_argument(
        "--spec",
        default=None,
        help="JSON (text or file) of options (the config's `hessian` section); flags override it",
    )
    parts = parser.add_mutually_exclusive_group()
    parts.add_argument(
        "--shard",
        type=_shard,
        default=None,
        metavar="I/N",
        help="compute only share I (from 1) of N: a partial table for --merge",
    )
    parts.add_argument(
        "--merge",
        nargs="+",
        default=None,
        metavar="PART",
        help="write the table merged from the partial tables of all N shares",
    )
    # One flag per option, derived from HessianOptions: its defaults and help are the only ones.
    for option in dataclasses.fields(HessianOptions):
        kind = {"choices": CHOICES[option.name]} if option.name in CHOICES else {}
        parser.add_argument(
            f"--{option.name.replace('_', '-')}",
            type=TYPES[option.type],
            default=None,
            help=f"{option.metadata['help']} (default: {option.default})",
            **kind,
        )
    add_execution_arguments(parser)
    add_store_argument(parser)


def _shard(text: str) -> tuple[int, int]:
    """``I/N`` (I from 1) -> (I - 1, N)."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not I/N, e.g. 2/4") from None
    if not 1 <= index <= count:
        raise argparse.ArgumentTypeError(f"share {text}: I must be in 1..N")
    return index - 1, count


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    import pandas as pd

    from infoopt.atomic import write_table
    from infoopt.checkpoint import load_checkpoint
    from infoopt.config import parse_spec
    from infoopt.data import load_prepared
    from infoopt.data.arrays import array_digest
    from infoopt.devices import acquire_device
    from infoopt.hessian.job import (
        TABLE,
        from_other_split,
        hessian_job_table,
        hessian_key,
        job_options,
        relabel_table,
    )
    from infoopt.hessian.metrics import GLOBAL, merge_hessian_tables
    from infoopt.hessian.options import HessianOptions
    from infoopt.store import Store, run_stored

    if Path(args.out).suffix != ".parquet":
        raise ValueError(f"--out {args.out}: the table must be a .parquet file")
    apply_threads(args)
    checkpoint = load_checkpoint(args.checkpoint)
    flags = {f.name: getattr(args, f.name) for f in dataclasses.fields(HessianOptions)}
    spec = parse_spec(args.spec) if args.spec else {}
    options = job_options(checkpoint, spec, flags)
    data_digest = array_digest(args.data)
    key, description = hessian_key(checkpoint, data_digest, options, args.shard)
    store = Store(args.store)

    def compute(result_dir, state_dir):
        if args.merge:
            table = merge_hessian_tables([pd.read_parquet(part) for part in args.merge])
        elif (
            table := from_other_split(store, checkpoint, data_digest, options, args.shard)
        ) is not None:
            print("made from the store's results of another split of the work", file=sys.stderr)
        else:
            with acquire_device(args.device) as lease:
                prepared = load_prepared(args.data, lease.device)
                table = hessian_job_table(
                    checkpoint, prepared, options, lease.device, progress=True, shard=args.shard
                )
        write_table(table, result_dir / TABLE)

    entry, restored = run_stored(
        store,
        "hessian",
        key,
        description,
        compute,
        lambda entry: {TABLE: args.out},
        relabel_table(checkpoint),
    )
    table = pd.read_parquet(args.out)
    summary = table[table["block"] == GLOBAL].iloc[0]
    how = f"restored from the store (key {key[:12]})" if restored else f"stored as {key[:12]}"
    if args.shard:
        index, count = args.shard
        print(f"{args.out}: share {index + 1} of {count}, status {summary['status']}; {how}")
        return 0
    print(
        f"{args.out}: {len(table) - 1} blocks, status {summary['status']}, "
        f"gap mean {summary['gap_mean']:.4g}, sharpness {summary['sharpness']:.4g}, "
        f"top eigenvalue {summary['lambda_max']:.4g}; {how}"
    )
    return 0
