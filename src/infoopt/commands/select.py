"""``infoopt select``: a learning rate chosen from a sweep's candidate runs."""

from __future__ import annotations

import argparse
import sys

HELP = "choose an optimizer's learning rate from its sweep runs (validation accuracy)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dirs", nargs="+", help="the sweep's candidate run directories")
    parser.add_argument("--out", required=True, help="the selection (JSON)")


def run(args: argparse.Namespace) -> None:
    from infoopt.atomic import write_json
    from infoopt.labels import number_label
    from infoopt.sweep import select_lr

    selection = select_lr(args.run_dirs)
    write_json(selection, args.out)
    lr = number_label(selection["hparams"]["lr"])
    print(f"{args.out}: lr {lr}")
    if selection["at_edge"]:
        print(f"warning: lr {lr} is at the edge of the swept grid; widen it", file=sys.stderr)
