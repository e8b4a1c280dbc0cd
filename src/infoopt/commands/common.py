"""Arguments shared by the commands that run models: device, threads and the result store."""

from __future__ import annotations

import argparse


def add_execution_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device",
        default=None,
        help="torch device (cpu, cuda, cuda:1); default: a free GPU if there is one, else cpu",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)"
    )


def apply_threads(args: argparse.Namespace) -> None:
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)


def add_store_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        default=None,
        help="the result store (default: $INFOOPT_STORE, else results/store); a result whose key "
        "is stored is placed from there instead of being computed again",
    )
