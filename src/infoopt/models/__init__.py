"""Model registry: architecture name -> factory.

Every factory takes keyword arguments only: ``num_classes``, ``in_channels``, ``image_size`` and
the architecture's own options. A checkpoint stores exactly the arguments of :func:`build_model`
(all JSON values), so ``build_model(**ckpt["model"])`` rebuilds the network.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from infoopt.models.resnet import resnet18
from infoopt.models.vit import vit

MODELS: dict[str, Callable[..., nn.Module]] = {"resnet18": resnet18, "vit": vit}

_COMMON = ("num_classes", "in_channels", "image_size")


def model_options(name: str) -> dict[str, Any]:
    """The options of architecture ``name`` with their defaults, read from its factory."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid models: {', '.join(sorted(MODELS))}")
    parameters = inspect.signature(MODELS[name]).parameters.values()
    return {p.name: p.default for p in parameters if p.name not in _COMMON}


def build_model(
    name: str,
    *,
    num_classes: int,
    in_channels: int,
    image_size: int,
    options: dict[str, Any] | None = None,
) -> nn.Module:
    """Build model ``name``; ``options`` are its own keyword arguments (see ``model_options``)."""
    valid = model_options(name)
    options = dict(options or {})
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(
            f"unknown option(s) {', '.join(map(repr, unknown))} for model {name!r}; "
            f"valid options: {', '.join(valid)}"
        )
    common = {"num_classes": num_classes, "in_channels": in_channels, "image_size": image_size}
    for arg, value in common.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{arg} must be a positive integer, got {value!r}")
    return MODELS[name](**common, **options)
