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
    import torch

    from infoopt.checkpoint import save_checkpoint
    from infoopt.config import parse_spec
    from infoopt.models import build_model
    from infoopt.seeding import derive_seed

    spec = parse_spec(args.spec)
    torch.manual_seed(derive_seed(spec["seed"], "init"))
    model = build_model(**spec["model"])
    save_checkpoint(
        {
            **{key: spec[key] for key in ("dataset", "arch", "seed", "model")},
            "optimizer": None,
            "status": "ok",
            "progress": 0.0,
            "step": 0,
            "state_dict": model.state_dict(),
            "metrics": {},
        },
        args.out,
    )
    count = sum(p.numel() for p in model.parameters())
    print(f"{args.out}: {spec['arch']} with {count:,} parameters, seed {spec['seed']}")
