"""``infoopt train``: one run, resumable, ending with checkpoints, a history and run.json."""

from __future__ import annotations

import argparse

from infoopt.commands.common import add_execution_arguments, apply_threads

HELP = "train one (dataset, architecture, optimizer, seed) run from its shared initial weights"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--spec", required=True, help="JSON (text or file) of the run (see infoopt.config.run_spec)"
    )
    parser.add_argument("--init", required=True, help="initial weights from `infoopt init`")
    parser.add_argument("--data", required=True, help="prepared dataset from `infoopt prepare`")
    parser.add_argument("--out-dir", required=True, help="the run's directory")
    parser.add_argument(
        "--hparams-from",
        default=None,
        help="selection of `infoopt select` whose hyper-parameters replace the spec's",
    )
    add_execution_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from infoopt.config import parse_spec
    from infoopt.devices import acquire_device
    from infoopt.sweep import apply_selection
    from infoopt.train import train_run

    apply_threads(args)
    spec = parse_spec(args.spec)
    if args.hparams_from is not None:
        spec = apply_selection(spec, args.hparams_from)
    with acquire_device(args.device) as lease:
        status = train_run(spec, args.init, args.data, args.out_dir, lease.device)
    print(f"{args.out_dir}: {status}")
    return 0
