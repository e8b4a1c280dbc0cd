"""``infoopt hessian``: one checkpoint's Hessian table (see ``infoopt.hessian.metrics``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from infoopt.commands.common import add_execution_arguments, apply_threads

HELP = "measure a checkpoint's Hessian: per-block spectra and entropy gaps, traces, top eigenvalue"

IDENTITY = ("dataset", "arch", "optimizer", "seed", "progress", "status")


def configure(parser: argparse.ArgumentParser) -> None:
    from infoopt.entropy import NORMALIZATIONS
    from infoopt.hessian.options import AGGREGATIONS, DTYPE_NAMES, POSITIVE_RULES, HessianOptions

    defaults = HessianOptions()
    parser.add_argument("checkpoint", help="checkpoint file from `infoopt train`")
    parser.add_argument("--data", required=True, help="prepared dataset from `infoopt prepare`")
    parser.add_argument("--out", required=True, help="the table to write (.parquet or .csv)")
    parser.add_argument(
        "--max-k", type=int, default=defaults.max_k, help="K: coordinates per block"
    )
    parser.add_argument("--probes", type=int, default=defaults.probes, help="Hutchinson probes")
    parser.add_argument(
        "--probe-batch", type=int, default=defaults.probe_batch, help="probes per data pass"
    )
    parser.add_argument(
        "--vector-batch",
        type=int,
        default=defaults.vector_batch,
        help="vectors per vmapped double-backward (1: a loop, fastest on CPU)",
    )
    parser.add_argument(
        "--micro-batch-size", type=int, default=None, help="images per forward (default: all)"
    )
    parser.add_argument("--dtype", choices=DTYPE_NAMES, default=defaults.dtype)
    parser.add_argument(
        "--eval-size", type=int, default=defaults.eval_size, help="test images, a seeded subset"
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed of the test subset, coordinates, probes and Lanczos (default: the run's seed)",
    )
    parser.add_argument("--lanczos-max-iter", type=int, default=defaults.lanczos_max_iter)
    parser.add_argument(
        "--lanczos-tol", type=float, default=defaults.lanczos_tol, help="relative residual"
    )
    parser.add_argument(
        "--positive",
        choices=POSITIVE_RULES,
        default=defaults.positive,
        help="a block is positive when λ_min > 0 (see --positive-tol), or when tr H[S_b, S_b] > 0",
    )
    parser.add_argument(
        "--positive-tol",
        type=float,
        default=defaults.positive_tol,
        help="λ_min must exceed this times max|λ| (relative rounding allowance)",
    )
    parser.add_argument("--normalization", choices=NORMALIZATIONS, default=defaults.normalization)
    parser.add_argument(
        "--aggregation",
        choices=AGGREGATIONS,
        default=defaults.aggregation,
        help="blocks entering the gap's mean and std",
    )
    add_execution_arguments(parser)


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    from infoopt.atomic import write_table
    from infoopt.checkpoint import CheckpointError, load_checkpoint
    from infoopt.data import eval_subset, load_prepared
    from infoopt.devices import acquire_device
    from infoopt.hessian.metrics import GLOBAL, checkpoint_hessian_table, missing_hessian_table
    from infoopt.hessian.options import HessianOptions
    from infoopt.hessian.space import ParameterSpace
    from infoopt.models import build_model

    if Path(args.out).suffix not in (".parquet", ".csv"):
        raise ValueError(f"--out {args.out}: the table must be a .parquet or .csv file")
    apply_threads(args)
    checkpoint = load_checkpoint(args.checkpoint)
    missing = [key for key in ("status", "model", "state_dict") if key not in checkpoint]
    if missing:
        raise CheckpointError(f"checkpoint {args.checkpoint} lacks {missing}")
    seed = checkpoint.get("seed", 0) if args.seed is None else args.seed
    options = HessianOptions(
        max_k=args.max_k,
        probes=args.probes,
        probe_batch=args.probe_batch,
        vector_batch=args.vector_batch,
        micro_batch_size=args.micro_batch_size,
        dtype=args.dtype,
        eval_size=args.eval_size,
        seed=seed,
        lanczos_max_iter=args.lanczos_max_iter,
        lanczos_tol=args.lanczos_tol,
        positive=args.positive,
        positive_tol=args.positive_tol,
        normalization=args.normalization,
        aggregation=args.aggregation,
    )
    model = build_model(**checkpoint["model"])
    if checkpoint["status"] == "diverged" or checkpoint["state_dict"] is None:
        table = missing_hessian_table(ParameterSpace.of(model), options)
    else:
        model.load_state_dict(checkpoint["state_dict"])
        with acquire_device(args.device) as lease:
            prepared = load_prepared(args.data, lease.device)
            found = {
                "num_classes": prepared.num_classes,
                "in_channels": prepared.in_channels,
                "image_size": prepared.image_size,
            }
            expected = {key: checkpoint["model"][key] for key in found}
            if expected != found:
                raise ValueError(
                    f"{args.data} does not match checkpoint {args.checkpoint}: "
                    f"data has {found}, the model expects {expected}"
                )
            x, y = eval_subset(prepared, "test", options.eval_size, options.seed)
            table = checkpoint_hessian_table(
                model, x, y, options, device=lease.device, progress=True
            )
    identity = pd.DataFrame([{key: checkpoint.get(key) for key in IDENTITY}] * len(table))
    table = pd.concat([identity, table], axis=1)
    write_table(table, args.out)
    summary = table[table["block"] == GLOBAL].iloc[0]
    print(
        f"{args.out}: {len(table) - 1} blocks, status {checkpoint['status']}, "
        f"gap mean {summary['gap_mean']:.4g}, sharpness {summary['sharpness']:.4g}, "
        f"top eigenvalue {summary['lambda_max']:.4g}"
    )
    return 0
