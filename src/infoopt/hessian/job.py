"""One Hessian job: the parts of a checkpoint's table it is asked for, with its run's identity.

A part is a block's rows or one of the global estimates (:mod:`infoopt.hessian.metrics`). Each
is its own entry in :mod:`infoopt.store`, under :func:`part_key`: the options (with the seed
resolved), the checkpoint's and the data's content digests, the versions that change numbers,
and which part it is. So a job finds by its key every part computed before, whatever jobs the
work was split into then; it computes only the others, all with one operator.
The checkpoint's digest in the key leaves out its optimizer's name
(:func:`~infoopt.checkpoint.identity_digest`), and a part's rows hold no identity: the identity
columns come from the checkpoint that asks, so a run trained under two names shares its parts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from infoopt.atomic import write_table
from infoopt.checkpoint import CheckpointHeader, identity_digest
from infoopt.hessian.options import HessianOptions
from infoopt.hessian.table import BLOCK, PART
from infoopt.store import Entry, Store, result_key

if TYPE_CHECKING:
    from torch import nn

# Columns that say which run and checkpoint a row belongs to; they lead every table.
IDENTITY = ("dataset", "arch", "optimizer", "seed", "progress", "status")
# The file name of a part's rows in its store entry.
ROWS = "rows.parquet"


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


def part_key(
    checkpoint: dict[str, Any], data_digest: str, options: HessianOptions, part: dict[str, str]
) -> tuple[str, dict[str, Any]]:
    """The store key of one ``part`` (``{"block": name}`` or ``{"estimate": name}``) of
    ``checkpoint``'s table under ``options``, and its description."""
    spec = dataclasses.asdict(options) | part
    inputs = {"checkpoint": identity_digest(checkpoint), "data": data_digest}
    identity = _identity(checkpoint)
    label = "/".join(str(identity[k]) for k in ("dataset", "arch", "optimizer"))
    ((kind, name),) = part.items()
    label += f"/seed{identity['seed']} at {identity['progress']:.2f}: {kind} {name}"
    description = {"label": label, "spec": spec, "inputs": inputs, "identity": identity}
    from infoopt.models.library import model_package

    key_spec = spec | model_package(checkpoint["model"]["name"])
    return result_key("hessian", key_spec, inputs), description


def _identity(checkpoint: dict[str, Any]) -> dict[str, Any]:
    header = CheckpointHeader.from_dict(checkpoint).to_dict()
    return {key: header[key] for key in IDENTITY}


def _rows_of(parts: pd.DataFrame, part: dict[str, str]) -> pd.DataFrame:
    if "block" in part:
        chosen = (parts[PART] == BLOCK) & (parts["block"] == part["block"])
    else:
        chosen = parts[PART] == part["estimate"]
    return parts[chosen.to_numpy()].reset_index(drop=True)


def _commit(store: Store, key: str, description: dict[str, Any], rows: pd.DataFrame) -> Entry:
    result = store.partial("hessian", key) / "result"
    shutil.rmtree(result, ignore_errors=True)
    write_table(rows, result / ROWS)
    return store.commit("hessian", key, result, description)


def job_parts(
    checkpoint: dict[str, Any],
    data: str | Path,
    options: HessianOptions,
    store: Store,
    *,
    blocks: Sequence[int] | None = None,
    estimates: Sequence[str],
    device: str | None = None,
    progress: bool = False,
    keep: str | Path | None = None,
) -> tuple[pd.DataFrame, str]:
    """The rows of ``blocks`` (default: all) and ``estimates`` of ``checkpoint``'s table on the
    prepared dataset at ``data``, identity first: each from the store, or computed (on a device
    from :func:`~infoopt.devices.acquire_device`) and stored; and a phrase that says which.

    ``keep``: a folder that receives a copy of each part's stored rows, which keeps its store
    entry in use (``infoopt store prune`` removes the entries whose copies are gone).
    A diverged checkpoint (no weights) gets its parts with every metric missing. A ValueError
    says when the data do not fit the model. With ``progress``, a line on stderr says what the
    cost model predicts for what is computed (:mod:`infoopt.hessian.cost`) before the work
    starts, and progress bars show it.
    """
    from infoopt.data.arrays import array_digest
    from infoopt.hessian.metrics import missing_parts
    from infoopt.hessian.space import ParameterSpace
    from infoopt.models import build_model

    header = CheckpointHeader.from_dict(checkpoint)
    model = build_model(**header.model)
    space = ParameterSpace.of(model)
    blocks = range(len(space)) if blocks is None else blocks
    if header.status == "diverged" or checkpoint["state_dict"] is None:
        parts = missing_parts(space, options, blocks, estimates)
        how = "no weights, nothing to compute"
    else:
        model.load_state_dict(checkpoint["state_dict"])
        wanted = [{"block": space.names[b]} for b in blocks]
        wanted += [{"estimate": name} for name in estimates]
        data_digest = array_digest(data)
        keys = [part_key(checkpoint, data_digest, options, part) for part in wanted]
        with contextlib.ExitStack() as held:
            entries: dict[str, Entry | None] = {}
            for key in sorted({key for key, _ in keys}):  # every job locks in one order
                entries[key] = held.enter_context(store.claim("hessian", key))
            todo = [i for i, (key, _) in enumerate(keys) if entries[key] is None]
            if todo:
                computed = _compute(
                    model,
                    checkpoint,
                    data,
                    options,
                    [space.names.index(wanted[i]["block"]) for i in todo if "block" in wanted[i]],
                    [wanted[i]["estimate"] for i in todo if "estimate" in wanted[i]],
                    device,
                    progress,
                )
                for i in todo:
                    key, description = keys[i]
                    entries[key] = _commit(store, key, description, _rows_of(computed, wanted[i]))
            how = f"{len(todo)} of {len(wanted)} parts computed and stored"
            if not todo:
                how = f"all {len(wanted)} parts restored from the store"
            if keep is not None:
                for part, (key, _) in zip(wanted, keys, strict=True):
                    ((kind, name),) = part.items()
                    store.restore(entries[key], {ROWS: Path(keep) / f"{kind}.{name}.parquet"})
            rows = [pd.read_parquet(entries[key].path / ROWS) for key, _ in keys]
        parts = (
            pd.concat(rows, ignore_index=True) if rows else missing_parts(space, options, [], [])
        )
    identity = pd.DataFrame([_identity(checkpoint)] * len(parts))
    return pd.concat([identity, parts], axis=1), how


def _compute(
    model: nn.Module,
    checkpoint: dict[str, Any],
    data: str | Path,
    options: HessianOptions,
    blocks: list[int],
    estimates: list[str],
    device: str | None,
    progress: bool,
) -> pd.DataFrame:
    """The parts (:func:`~infoopt.hessian.metrics.hessian_parts`) of ``model`` on ``data``'s
    test images."""
    from infoopt.data import eval_subset, load_prepared
    from infoopt.devices import acquire_device
    from infoopt.hessian.cost import predict
    from infoopt.hessian.metrics import hessian_operator, hessian_parts

    with acquire_device(device) as lease:
        prepared = load_prepared(data, lease.device)
        found = {
            "num_classes": prepared.num_classes,
            "in_channels": prepared.in_channels,
            "image_size": prepared.image_size,
        }
        expected = {key: checkpoint["model"][key] for key in found}
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
                checkpoint["model"],
                blocks=blocks,
                estimates=estimates,
                device_kind=lease.device.type,
            )
            print(prediction.summary(), file=sys.stderr)
        operator = hessian_operator(model, x, y, options, device=lease.device, progress=progress)
        return hessian_parts(operator, options, blocks, estimates, progress)
