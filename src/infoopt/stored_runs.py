"""A training run in the result store (:mod:`infoopt.store`): its key, and its files relabelled
for another name.

A run is identified by what determines its result: its spec but for the optimizer's name
(:data:`infoopt.checkpoint.LABEL`) and the settings of how it is carried out, the content
digests of its initial weights and data, and the versions that change numbers. So a grid point
at an optimizer's own settings (or any two names for one optimizer) is trained once; the other
name gets the stored files relabelled (:func:`relabel_run_file`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from infoopt.atomic import write_json
from infoopt.checkpoint import LABEL, load_checkpoint, save_checkpoint
from infoopt.config import Run, all_runs, run_spec
from infoopt.data.arrays import array_digest
from infoopt.records import RunRecord, RunSpec
from infoopt.store import Relabel, result_key

# Settings that change how a run is carried out, not its result: left out of its store key.
NOT_RESULT = ("resume_every_epochs",)


def result_spec(spec: RunSpec) -> dict[str, Any]:
    """``spec``'s dict form without what does not change the result: the optimizer's name and
    how the run is carried out."""
    values = spec.to_dict()
    training = {k: v for k, v in values["training"].items() if k not in NOT_RESULT}
    return {k: v for k, v in values.items() if k != LABEL} | {"training": training}


def relabel_run_file(optimizer: str) -> Relabel:
    """The :data:`~infoopt.store.Relabel` of a stored run's files for a run whose optimizer is
    named ``optimizer``: the checkpoints and ``run.json`` carry the name, the history does not."""

    def relabel(name: str, stored: Path, target: Path) -> bool:
        if name == "run.json":
            record = RunRecord.read(stored)
            if record.spec.optimizer == optimizer:
                return False
            values = record.to_dict()
            write_json(values | {"spec": values["spec"] | {LABEL: optimizer}}, target)
            return True
        if name.endswith(".pt"):
            checkpoint = load_checkpoint(stored)
            if checkpoint[LABEL] == optimizer:
                return False
            save_checkpoint(checkpoint | {LABEL: optimizer}, target)
            return True
        return False

    return relabel


def run_key(
    spec: RunSpec, init_path: str | Path, data_path: str | Path
) -> tuple[str, dict[str, Any]]:
    """The store key of the run ``spec`` from these inputs, and its description for the store
    (a CheckpointError or DataError names an input that is damaged)."""
    inputs = {
        "init": load_checkpoint(init_path)["digest"],
        "data": array_digest(data_path),
    }
    label = f"{spec.dataset}/{spec.arch}/{spec.optimizer}/seed{spec.seed}"
    if "holdout" in spec.training:
        label += f" (sweep, lr {spec.hparams['lr']:g})"
    description = {
        "label": label,
        "spec": spec.to_dict(),
        "inputs": {
            "init": {"path": str(init_path), "digest": inputs["init"]},
            "data": {"path": str(data_path), "digest": inputs["data"]},
        },
    }
    from infoopt.models.library import model_package

    key_spec = result_spec(spec) | model_package(spec.model["name"])
    return result_key("train", key_spec, inputs), description


def earlier_same_run(config: dict, run: Run) -> Run | None:
    """The first run of the configuration (in :func:`~infoopt.config.all_runs` order) that is
    ``run`` under another optimizer name, or None. The workflow trains ``run`` after it, so
    ``run`` is restored from the store instead of waiting for the store's lock on a device. A
    run whose lr a sweep selects is its own: its hyper-parameters are known only when it runs."""
    from infoopt.sweep import selection_file

    if selection_file(config, run) is not None:
        return None
    identity = result_spec(RunSpec.from_dict(run_spec(config, run)))
    for other in all_runs(config):
        if other == run:
            return None
        if other.optimizer == run.optimizer or selection_file(config, other) is not None:
            continue
        if result_spec(RunSpec.from_dict(run_spec(config, other))) == identity:
            return other
    return None
