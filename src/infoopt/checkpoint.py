"""The checkpoint file format shared by training, Hessian analysis and collection.

A checkpoint is a dict saved with ``torch.save``: the fields of its :class:`CheckpointHeader`,
``state_dict`` (the model's weights; None where the run diverged before this point), ``format``
(``FORMAT``) and ``digest``, the content digest of everything else
(:func:`infoopt.digest.value_digest`). Loading verifies the digest, so a damaged file is named as
such; :func:`identity_digest`, the same digest but for the optimizer's name, identifies the
checkpoint in the keys of the results computed from it (:mod:`infoopt.store`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from infoopt.atomic import save_torch
from infoopt.digest import value_digest

FORMAT = "infoopt.checkpoint/2"
# The name the configuration gives the run's optimizer: a label, not part of what the run
# computes, so runs that differ only in it are one run (infoopt.store relabels its files).
LABEL = "optimizer"


@dataclass(frozen=True)
class CheckpointHeader:
    """What a checkpoint says besides its weights: whose run it is, where in it, how it stood."""

    dataset: str
    arch: str
    # The configuration's name of the run's optimizer (LABEL); None for initial weights.
    optimizer: str | None
    seed: int
    # Keyword arguments of infoopt.models.build_model.
    model: dict[str, Any]
    # "ok", or "diverged" for a point a diverged run never reached (then it has no weights).
    status: str
    # The fraction of the run's optimizer steps, and the step.
    progress: float
    step: int
    # Test and train accuracy (%) and loss at that point; none for initial weights.
    metrics: dict[str, float]
    # The step in epochs; None for initial weights.
    epoch: float | None = None

    @classmethod
    def from_dict(cls, checkpoint: Mapping[str, Any]) -> CheckpointHeader:
        """The header of a checkpoint's dict (which has every key of :data:`REQUIRED`)."""
        names = [field.name for field in dataclasses.fields(cls)]
        return cls(**{name: checkpoint[name] for name in names if name in checkpoint})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# The keys every checkpoint has: the header's fields without a default, and the weights.
REQUIRED = (
    *(f.name for f in dataclasses.fields(CheckpointHeader) if f.default is dataclasses.MISSING),
    "state_dict",
)


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be read or is not in our format."""


def save_checkpoint(checkpoint: Mapping[str, Any], path: str | os.PathLike) -> None:
    """Save the header's fields and ``state_dict`` of ``checkpoint`` (a loaded checkpoint's
    digest, of its old content, is computed afresh); a ValueError names a missing field."""
    missing = [key for key in REQUIRED if key not in checkpoint]
    if missing:
        raise ValueError(f"checkpoint for {path} lacks {missing}")
    header = CheckpointHeader.from_dict(checkpoint)
    payload = {"format": FORMAT} | header.to_dict() | {"state_dict": checkpoint["state_dict"]}
    save_torch(payload | {"digest": value_digest(payload)}, path)


def identity_digest(checkpoint: dict[str, Any]) -> str:
    """The content digest of what results computed from ``checkpoint`` depend on: all of it
    but its :data:`LABEL`, so a relabelled copy has the same."""
    return value_digest({k: v for k, v in checkpoint.items() if k not in ("digest", LABEL)})


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """A checkpoint whose digest matches its content and that has every :data:`REQUIRED` key
    (:meth:`CheckpointHeader.from_dict` reads its header); a CheckpointError names a bad file."""
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
    missing = [key for key in REQUIRED if key not in checkpoint]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {missing}; {redo}")
    return checkpoint | {"digest": stored}
