"""The checkpoint file format shared by training, Hessian analysis and collection.

A checkpoint is a dict saved with ``torch.save``:

- ``format``: ``FORMAT``
- ``status``: ``"ok"``, or ``"diverged"`` for checkpoints a diverged run never reached
  (then ``state_dict`` is None)
- ``progress`` (fraction of the run's optimizer steps), ``step``, ``epoch``
- ``dataset``, ``arch``, ``optimizer``, ``seed``
- ``model``: keyword arguments of :func:`infoopt.models.build_model`
- ``state_dict``: the model's weights
- ``metrics``: test accuracy (%), test loss and mean train loss at that point
- ``digest``: the content digest of everything else (:func:`infoopt.digest.value_digest`);
  loading verifies it, so a damaged file is named as such, and it identifies the checkpoint
  in the keys of the results computed from it (:mod:`infoopt.store`) but for ``optimizer``
  (:func:`identity_digest`)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from infoopt.atomic import save_torch
from infoopt.digest import value_digest

FORMAT = "infoopt.checkpoint/2"
REQUIRED = ("status", "progress", "step", "dataset", "arch", "model", "state_dict", "metrics")
# The name the configuration gives the run's optimizer: a label, not part of what the run
# computes, so runs that differ only in it are one run (infoopt.store relabels its files).
LABEL = "optimizer"


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be read or is not in our format."""


def save_checkpoint(checkpoint: dict[str, Any], path: str | os.PathLike) -> None:
    missing = [key for key in REQUIRED if key not in checkpoint]
    if missing:
        raise ValueError(f"checkpoint for {path} lacks {missing}")
    # A loaded checkpoint's digest is of its old content: the new one is computed afresh.
    payload = {"format": FORMAT} | {k: v for k, v in checkpoint.items() if k != "digest"}
    save_torch(payload | {"digest": value_digest(payload)}, path)


def identity_digest(checkpoint: dict[str, Any]) -> str:
    """The content digest of what results computed from ``checkpoint`` depend on: all of it
    but its :data:`LABEL`, so a relabelled copy has the same."""
    return value_digest({k: v for k, v in checkpoint.items() if k not in ("digest", LABEL)})


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """A checkpoint whose digest matches its content; a CheckpointError names a bad file."""
    path = Path(path)
    redo = "delete it and rerun the step that wrote it"
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError as error:
        raise CheckpointError(f"checkpoint {path} does not exist") from error
    except Exception as error:  # torch raises many types for a damaged file
        # Only the first line: torch goes on with advice (weights_only=False) that does not apply.
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"checkpoint {path} is corrupt ({reason}); {redo}") from error
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an {FORMAT} checkpoint; {redo}")
    stored = checkpoint.pop("digest", None)
    if stored != value_digest(checkpoint):
        raise CheckpointError(
            f"checkpoint {path} is corrupt (content does not match its digest); {redo}"
        )
    return checkpoint | {"digest": stored}
