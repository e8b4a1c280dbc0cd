"""The initial weights of a (dataset, architecture, seed), shared by every optimizer."""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from infoopt.checkpoint import CheckpointHeader, save_checkpoint
from infoopt.models import build_model
from infoopt.seeding import derive_seed


def save_initial_weights(spec: dict[str, Any], path: str | os.PathLike) -> nn.Module:
    """Build ``spec["model"]`` from seed ``spec["seed"]`` and save it as a progress-0 checkpoint.

    ``spec`` has ``dataset``, ``arch``, ``seed`` and ``model`` (see ``infoopt.config.init_spec``).
    """
    torch.manual_seed(derive_seed(spec["seed"], "init"))
    model = build_model(**spec["model"])
    header = CheckpointHeader(
        dataset=spec["dataset"],
        arch=spec["arch"],
        optimizer=None,
        seed=spec["seed"],
        model=spec["model"],
        status="ok",
        progress=0.0,
        step=0,
        metrics={},
    )
    save_checkpoint(header.to_dict() | {"state_dict": model.state_dict()}, path)
    return model
