"""Model registry: architecture name -> factory.

Every factory takes keyword arguments only: ``num_classes``, ``in_channels``, ``image_size`` and
the architecture's own options. A checkpoint stores exactly the arguments of :func:`build_model`
(all JSON values), so ``build_model(**ckpt["model"])`` rebuilds the network.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from infoopt.canonical import normalize
from infoopt.models.resnet import resnet18
from infoopt.models.vit import vit

MODELS: dict[str, Callable[..., nn.Module]] = {"resnet18": resnet18, "vit": vit}

_COMMON = ("num_classes", "in_channels", "image_size")


class ModelOptionError(ValueError):
    """A model option a factory cannot take; ``name`` is it (None: a combination)."""

    def __init__(self, name: str | None, message: str) -> None:
        super().__init__(message)
        self.name = name


def model_options(name: str) -> dict[str, Any]:
    """The options of architecture ``name`` with their defaults, read from its factory."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid models: {', '.join(sorted(MODELS))}")
    parameters = inspect.signature(MODELS[name]).parameters.values()
    return {p.name: p.default for p in parameters if p.name not in _COMMON}


def _check_names(name: str, options: dict[str, Any], valid: dict[str, Any]) -> None:
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ModelOptionError(
            unknown[0],
            f"unknown option(s) {', '.join(map(repr, unknown))} for model {name!r}; "
            f"valid options: {', '.join(valid)}",
        )


def _matches(value: Any, annotation: Any) -> bool:
    """Whether a JSON value fits a factory's annotation (int, float, bool, Sequence[int])."""
    if annotation is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if annotation is int:
        return isinstance(value, int)
    if annotation is float:
        return isinstance(value, int | float)
    if typing.get_origin(annotation) is Sequence:
        (item,) = typing.get_args(annotation)
        return isinstance(value, list | tuple) and all(_matches(v, item) for v in value)
    return True


def resolve_model_options(
    name: str, options: dict[str, Any] | None, shape: dict[str, int] | None = None
) -> dict[str, Any]:
    """Every option of model ``name``, checked and with its default filled in.

    Names and types come from the factory's signature. Given a dataset's ``shape``
    (``num_classes``, ``in_channels``, ``image_size``), the constraints between them (e.g. an
    image size divisible by the patch size) come from building the model on the meta device,
    which allocates nothing. A ModelOptionError names the option.
    """
    valid = model_options(name)
    # Integral floats as ints, as in every spec: `dim: 512.0` means `dim: 512`.
    options = normalize(dict(options or {}))
    _check_names(name, options, valid)
    hints = typing.get_type_hints(MODELS[name])
    for option, value in options.items():
        expected = hints.get(option)
        if expected is not None and not _matches(value, expected):
            shown = expected.__name__
            if typing.get_origin(expected) is Sequence:
                shown = f"a list of {typing.get_args(expected)[0].__name__}"
            raise ModelOptionError(
                option, f"model {name!r}: option {option} must be {shown}, got {value!r}"
            )
    resolved = {**valid, **options}
    if shape is not None:
        try:
            with torch.device("meta"):
                MODELS[name](**shape, **resolved)
        except (ValueError, TypeError, RuntimeError) as error:
            raise ModelOptionError(None, f"model {name!r} on {shape}: {error}") from None
    return normalize(resolved)


def build_model(
    name: str,
    *,
    num_classes: int,
    in_channels: int,
    image_size: int,
    options: dict[str, Any] | None = None,
) -> nn.Module:
    """Build model ``name``; ``options`` are its own keyword arguments (see ``model_options``)."""
    common = {"num_classes": num_classes, "in_channels": in_channels, "image_size": image_size}
    for arg, value in common.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{arg} must be a positive integer, got {value!r}")
    _check_names(name, options or {}, model_options(name))
    return MODELS[name](**common, **(options or {}))
