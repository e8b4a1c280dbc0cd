"""``infoopt hessian``: one checkpoint's Hessian table, or parts of it (see
``infoopt.hessian.table``)."""

from __future__ import annotations

import argparse
import dataclasses
import typing

from infoopt.commands.common import add_execution_arguments, add_store_argument, apply_threads

HELP = "measure a checkpoint's Hessian: per-block spectra and entropy gaps, traces, top eigenvalue"


def configure(parser: argparse.ArgumentParser) -> None:
    from infoopt.hessian.options import CHOICES, HessianOptions

    parser.add_argument(
        "checkpoint", nargs="?", help="checkpoint file from `infoopt train` (not with --assemble)"
    )
    parser.add_argument("--data", help="prepared dataset from `infoopt prepare`")
    parser.add_argument("--out", required=True, help="the table to write (.parquet)")
    parser.add_argument(
        "--spec",
        default=None,
        help="JSON (text or file) of options (the config's `hessian` section); flags override it",
    )
    parser.add_argument(
        "--blocks",
        type=_blocks,
        default=None,
        metavar="I,J,...",
        help="write only parts: the rows of these blocks (from 0, in named_parameters() order; "
        "'' for none) and the --estimates, for --assemble",
    )
    parser.add_argument(
        "--estimates",
        type=_estimates,
        default=None,
        metavar="NAME,...",
        help="write only parts: these global estimates (traces, top_eigenvalue; '' for none) "
        "and the rows of the --blocks, for --assemble",
    )
    parser.add_argument(
        "--assemble",
        nargs="+",
        default=None,
        metavar="PARTS",
        help="write the table from the parts that make it up (files written with --blocks "
        "and --estimates); needs neither checkpoint nor data",
    )
    parser.add_argument(
        "--keep",
        default=None,
        metavar="DIR",
        help="a folder for a copy of each part's stored rows, which keeps it in the store's use",
    )
    # One flag per option, derived from HessianOptions: its defaults, types and help are the
    # only ones.
    hints = typing.get_type_hints(HessianOptions)
    for option in dataclasses.fields(HessianOptions):
        kind = {"choices": CHOICES[option.name]} if option.name in CHOICES else {}
        parser.add_argument(
            f"--{option.name.replace('_', '-')}",
            type=_value_type(hints[option.name]),
            default=None,
            help=f"{option.metadata['help']} (default: {option.default})",
            **kind,
        )
    add_execution_arguments(parser)
    add_store_argument(parser)


def _value_type(hint: object) -> type:
    """The type a flag's text converts to: the hint, or what an optional hint holds besides
    None (``int | None`` -> ``int``)."""
    types = [t for t in typing.get_args(hint) if t is not type(None)]
    return types[0] if types else hint  # type: ignore[return-value]


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _blocks(text: str) -> tuple[int, ...]:
    try:
        blocks = tuple(int(name) for name in _names(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of block indices") from None
    if any(b < 0 for b in blocks) or len(set(blocks)) != len(blocks):
        raise argparse.ArgumentTypeError(f"{text!r}: block indices are distinct and >= 0")
    return blocks


def _estimates(text: str) -> tuple[str, ...]:
    from infoopt.hessian.options import ESTIMATES

    names = tuple(_names(text))
    unknown = [name for name in names if name not in ESTIMATES]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown estimate(s) {', '.join(unknown)}; valid: {', '.join(ESTIMATES)}"
        )
    return names


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import pandas as pd

    from infoopt.atomic import write_table
    from infoopt.hessian.table import GLOBAL, hessian_table

    if Path(args.out).suffix != ".parquet":
        raise ValueError(f"--out {args.out}: the table must be a .parquet file")
    only_parts = args.blocks is not None or args.estimates is not None
    if args.assemble:
        if only_parts or args.checkpoint:
            raise ValueError(
                "--assemble takes the parts alone: no checkpoint, --blocks, --estimates"
            )
        shares = [pd.read_parquet(path) for path in args.assemble]
        table = hessian_table(pd.concat([share for share in shares if len(share)]))
        how = f"assembled from {len(args.assemble)} shares"
    else:
        if not args.checkpoint or not args.data:
            raise ValueError("infoopt hessian needs a checkpoint and --data (or --assemble)")
        table, how = _measure(args, only_parts)
    write_table(table, args.out)
    if only_parts:
        print(f"{args.out}: {len(table)} rows of parts, status {table['status'].iloc[0]}; {how}")
        return 0
    summary = table[table["block"] == GLOBAL].iloc[0]
    print(
        f"{args.out}: {len(table) - 1} blocks, status {summary['status']}, "
        f"gap mean {summary['gap_mean']:.4g}, sharpness {summary['sharpness']:.4g}, "
        f"top eigenvalue {summary['lambda_max']:.4g}; {how}"
    )
    return 0


def _measure(args: argparse.Namespace, only_parts: bool):
    """The checkpoint's parts that ``args`` ask for, or with no --blocks or --estimates its
    table; and a phrase saying whether they were computed or restored from the store."""
    from infoopt.checkpoint import load_checkpoint
    from infoopt.config import parse_spec
    from infoopt.hessian.job import job_options, job_parts
    from infoopt.hessian.options import ESTIMATES, HessianOptions
    from infoopt.hessian.table import hessian_table
    from infoopt.store import Store

    apply_threads(args)
    checkpoint = load_checkpoint(args.checkpoint)
    flags = {f.name: getattr(args, f.name) for f in dataclasses.fields(HessianOptions)}
    spec = parse_spec(args.spec) if args.spec else {}
    options = job_options(checkpoint, spec, flags)
    parts, how = job_parts(
        checkpoint,
        args.data,
        options,
        Store(args.store),
        blocks=(args.blocks or ()) if only_parts else None,
        estimates=(args.estimates or ()) if only_parts else ESTIMATES,
        device=args.device,
        progress=True,
        keep=args.keep,
    )
    return (parts if only_parts else hessian_table(parts)), how
