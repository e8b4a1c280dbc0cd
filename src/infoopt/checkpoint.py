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
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from infoopt.atomic import save_torch

FORMAT = "infoopt.checkpoint/1"
REQUIRED = ("status", "progress", "step", "dataset", "arch", "model", "state_dict", "metrics")


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be read or is not in our format."""


def progress_label(progress: float) -> str:
    """The file-name form of a progress fraction: 0.25 -> '0.25'."""
    return f"{progress:.2f}"


def save_checkpoint(checkpoint: dict[str, Any], path: str | os.PathLike) -> None:
    missing = [key for key in REQUIRED if key not in checkpoint]
    if missing:
        raise ValueError(f"checkpoint for {path} lacks {missing}")
    save_torch({"format": FORMAT, **checkpoint}, path)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    path = Path(path)
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError as error:
        raise CheckpointError(f"checkpoint {path} does not exist") from error
    except Exception as error:  # torch raises many types for a damaged file
        raise CheckpointError(f"checkpoint {path} is unreadable: {error}") from error
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path} is not an {FORMAT} file")
    return checkpoint
