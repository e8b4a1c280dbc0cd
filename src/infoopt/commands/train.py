"""``infoopt train``: one run, resumable, ending with checkpoints, a history and run.json."""

from __future__ import annotations

import argparse

from infoopt.commands.common import add_execution_arguments, add_store_argument, apply_threads

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
    add_store_argument(parser)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from infoopt.config import parse_spec
    from infoopt.devices import acquire_device
    from infoopt.records import RunRecord, RunSpec
    from infoopt.store import Store, run_stored
    from infoopt.stored_runs import relabel_run_file, run_key
    from infoopt.sweep import apply_selection
    from infoopt.train import train_run

    apply_threads(args)
    values = parse_spec(args.spec)
    if args.hparams_from is not None:
        values = apply_selection(values, args.hparams_from)
    spec = RunSpec.from_dict(values)
    key, description = run_key(spec, args.init, args.data)

    def compute(result_dir, state_dir):
        with acquire_device(args.device) as lease:
            train_run(spec, args.init, args.data, result_dir, lease.device, state_dir)

    def targets(entry):
        return {name: Path(args.out_dir) / name for name in entry.files}

    entry, restored = run_stored(
        Store(args.store),
        "train",
        key,
        description,
        compute,
        targets,
        relabel_run_file(spec.optimizer),
    )
    how = f"stored as {key[:12]}"
    if restored:
        trained_as = entry.record["spec"]["optimizer"]
        named = "" if trained_as == spec.optimizer else f", trained as {trained_as}"
        how = f"restored from the store (key {key[:12]}{named})"
    status = RunRecord.read(Path(args.out_dir) / "run.json").status
    print(f"{args.out_dir}: {status}, {how}")
    return 0
