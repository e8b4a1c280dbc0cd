"""``infoopt init``: the initial weights shared by every optimizer of a comparison."""

from __future__ import annotations

import argparse

HELP = "save the seeded initial weights of one (dataset, architecture, seed)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--spec",
        required=True,
        help="JSON (text or file): dataset, arch, seed, model (see infoopt.config.init_spec)",
    )
    parser.add_argument("--out", required=True, help="checkpoint file to write")


def run(args: argparse.Namespace) -> None:
    from infoopt.config import parse_spec
    from infoopt.initial import save_initial_weights

    spec = parse_spec(args.spec)
    model = save_initial_weights(spec, args.out)
    count = sum(p.numel() for p in model.parameters())
    print(f"{args.out}: {spec['arch']} with {count:,} parameters, seed {spec['seed']}")
