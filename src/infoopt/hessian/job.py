"""One Hessian job: a checkpoint's table with its run's identity, and its key in the store.

:func:`hessian_job_table` is what ``infoopt hessian`` computes; :func:`hessian_key` is what
identifies it in :mod:`infoopt.store`: the options (with the seed resolved), the checkpoint's
and the data's content digests, and the versions that change numbers. The checkpoint's digest
leaves out its optimizer's name (:func:`~infoopt.checkpoint.identity_digest`): a table stored
under another name is placed relabelled (:func:`relabel_table`).
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from infoopt.atomic import write_table
from infoopt.checkpoint import LABEL, CheckpointHeader, identity_digest
from infoopt.hessian.cost import predict
from infoopt.hessian.metrics import (
    checkpoint_hessian_table,
    merge_hessian_tables,
    missing_hessian_table,
    share_of_table,
)
from infoopt.hessian.options import HessianOptions
from infoopt.hessian.space import ParameterSpace
from infoopt.models import build_model
from infoopt.store import Entry, Relabel, Store, result_key

# Columns that say which run and checkpoint a row belongs to; they lead every table.
IDENTITY = ("dataset", "arch", "optimizer", "seed", "progress", "status")
# The file name of a Hessian table in its store entry.
TABLE = "table.parquet"


def job_options(
    checkpoint: dict[str, Any], spec: dict[str, Any], flags: dict[str, Any]
) -> HessianOptions:
    """The options of a job: defaults, then ``spec`` (the config's ``hessian`` section), then
    the ``flags`` given (None: not given); the seed is the run's unless set."""
    names = {option.name for option in dataclasses.fields(HessianOptions)}
    unknown = sorted(set(spec) - names)
    if unknown:
        raise ValueError(f"--spec: unknown Hessian option(s) {', '.join(unknown)}")
    given = {name: value for name, value in flags.items() if value is not None}
    return HessianOptions(**{"seed": CheckpointHeader.from_dict(checkpoint).seed} | spec | given)


def hessian_key(
    checkpoint: dict[str, Any],
    data_digest: str,
    options: HessianOptions,
    shard: tuple[int, int] | None = None,
) -> tuple[str, dict[str, Any]]:
    """The store key of ``checkpoint``'s table (or of one ``shard``'s partial table) under
    ``options``, and its description. A merged table has the key of the unsharded one."""
    spec = dataclasses.asdict(options) | ({"shard": list(shard)} if shard else {})
    inputs = {"checkpoint": identity_digest(checkpoint), "data": data_digest}
    identity = _identity(checkpoint)
    label = "/".join(str(identity[k]) for k in ("dataset", "arch", "optimizer"))
    label += f"/seed{identity['seed']} at {identity['progress']:.2f}"
    if shard:
        label += f" (shard {shard[0] + 1} of {shard[1]})"
    description = {"label": label, "spec": spec, "inputs": inputs, "identity": identity}
    return result_key("hessian", spec, inputs), description


def _identity(checkpoint: dict[str, Any]) -> dict[str, Any]:
    header = CheckpointHeader.from_dict(checkpoint).to_dict()
    return {key: header[key] for key in IDENTITY}


def relabel_table(checkpoint: dict[str, Any]) -> Relabel:
    """The :data:`~infoopt.store.Relabel` of a stored table for ``checkpoint``'s optimizer."""

    optimizer = CheckpointHeader.from_dict(checkpoint).optimizer

    def relabel(name: str, stored: Path, target: Path) -> bool:
        table = pd.read_parquet(stored)
        if set(table[LABEL]) == {optimizer}:
            return False
        write_table(table.assign(**{LABEL: optimizer}), target)
        return True

    return relabel


def from_other_split(
    store: Store,
    checkpoint: dict[str, Any],
    data_digest: str,
    options: HessianOptions,
    shard: tuple[int, int] | None,
) -> pd.DataFrame | None:
    """The table (or share) asked for, made from what the store holds under another split of
    the same work: a share cut from the whole table, or the whole merged from every share of
    some split. None if the store holds neither; then it must be computed."""
    if shard is not None:
        whole = store.get("hessian", hessian_key(checkpoint, data_digest, options)[0])
        if whole is None:
            return None
        return share_of_table(pd.read_parquet(whole.path / TABLE), options, shard)
    _, wanted = hessian_key(checkpoint, data_digest, options)
    splits: dict[int, dict[int, Entry]] = {}
    for entry in store.entries():
        spec = dict(entry.record.get("spec", {}))
        split = spec.pop("shard", None)
        same = spec == wanted["spec"] and entry.record["inputs"] == wanted["inputs"]
        if entry.kind == "hessian" and split and same:
            splits.setdefault(split[1], {})[split[0]] = entry
    for count, shares in sorted(splits.items()):
        if len(shares) == count:
            parts = [pd.read_parquet(shares[i].path / TABLE) for i in range(count)]
            return merge_hessian_tables(parts)
    return None


def hessian_job_table(
    checkpoint: dict[str, Any],
    prepared,
    options: HessianOptions,
    device: torch.device,
    progress: bool = False,
    shard: tuple[int, int] | None = None,
) -> pd.DataFrame:
    """The Hessian table of ``checkpoint`` on ``prepared``'s test images, identity first (or
    one ``shard``'s partial table, see :func:`~infoopt.hessian.metrics.shard_plan`).

    A diverged checkpoint (no weights) gets the table with every metric missing, in every
    shard. A ValueError says when the data do not fit the model. With ``progress``, a line
    on stderr says what the cost model predicts (:mod:`infoopt.hessian.cost`) before the
    work starts, and progress bars show it.
    """
    from infoopt.data import eval_subset

    header = CheckpointHeader.from_dict(checkpoint)
    model = build_model(**header.model)
    if header.status == "diverged" or checkpoint["state_dict"] is None:
        table = missing_hessian_table(ParameterSpace.of(model), options)
        if shard:
            table = table.assign(shard=shard[0], shards=shard[1])
    else:
        model.load_state_dict(checkpoint["state_dict"])
        found = {
            "num_classes": prepared.num_classes,
            "in_channels": prepared.in_channels,
            "image_size": prepared.image_size,
        }
        expected = {key: header.model[key] for key in found}
        if expected != found:
            raise ValueError(
                f"the data do not match the checkpoint: data have {found}, "
                f"the model expects {expected}"
            )
        x, y = eval_subset(prepared, "test", options.eval_size, options.seed)
        if progress:
            # For the images there are: a small test set caps eval_size.
            prediction = predict(
                dataclasses.replace(options, eval_size=len(y)),
                header.model,
                shard=shard,
                device_kind=device.type,
            )
            print(prediction.summary(), file=sys.stderr)
        table = checkpoint_hessian_table(
            model, x, y, options, device=device, progress=progress, shard=shard
        )
    identity = pd.DataFrame([_identity(checkpoint)] * len(table))
    return pd.concat([identity, table], axis=1)
