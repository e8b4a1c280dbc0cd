"""Models: ours by name (``resnet18``, ``vit``), timm's, torchvision's and a user's factory.

Every factory of ours takes keyword arguments only: ``num_classes``, ``in_channels``,
``image_size`` and the architecture's own options; the others are built as
:mod:`infoopt.models.library` says. A checkpoint stores exactly the arguments of
:func:`build_model` (all JSON values), so ``build_model(**ckpt["model"])`` rebuilds the network.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from infoopt.canonical import normalize
from infoopt.imports import is_import_path
from infoopt.models.library import (
    LibraryModelError,
    build_library_model,
    check_library_options,
    is_library_model,
    unexpected_option,
)
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
    """The options of architecture ``name`` with their defaults, read from its factory (none
    for a library's model or a user's factory: their options are taken as given)."""
    if is_library_model(name):
        return {}
    if name not in MODELS:
        raise ValueError(
            f"unknown model {name!r}; valid models: {', '.join(sorted(MODELS))}, timm, "
            "torchvision or an import path package.module:function"
        )
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


# Up to this many parameters (0.2 GB in float32), the fit check runs ours and timm's and
# torchvision's models on the CPU: a first forward on the meta device costs about 2 s of imports
# and Python decompositions, which every dry run would pay, while building and running a model
# of this size takes a fraction. A user's factory is only ever called on the meta device (the
# README promises it, so that a factory that loads weights can skip them there).
CPU_CHECK_MAX_PARAMETERS = 50_000_000


def _probe(name: str, options: dict[str, Any], shape: dict[str, int], device: str) -> Any:
    """The output of the model built on ``device`` for two images of ``shape``."""
    side = shape["image_size"]
    with torch.device(device), torch.no_grad():
        model = build_model(name, **shape, options=options)
        return model.eval()(torch.zeros(2, shape["in_channels"], side, side))


def _check_fit(name: str, options: dict[str, Any], shape: dict[str, int]) -> None:
    """Build the model and pass two images of ``shape`` through it: on the CPU where it is
    small and not a user's factory, else on the meta device (which allocates nothing); a
    ModelOptionError says what does not fit."""
    try:
        with torch.device("meta"):
            size = sum(p.numel() for p in build_model(name, **shape, options=options).parameters())
        small = size <= CPU_CHECK_MAX_PARAMETERS and not is_import_path(name)
        device = "cpu" if small else "meta"
        logits = _probe(name, options, shape, device)
    except LibraryModelError as error:
        raise ModelOptionError(error.option, f"model {name!r}: {error}") from None
    except TypeError as error:
        option = unexpected_option(error)
        if option is not None and option in options:
            raise ModelOptionError(option, f"model {name!r} takes no option {option}") from None
        message = f"TypeError: {error}".splitlines()[0]
        raise ModelOptionError(None, f"model {name!r} on {shape}: {message}") from None
    except (ValueError, RuntimeError, AssertionError, AttributeError, IndexError) as error:
        # Whatever a model's own checks raise (timm asserts; a user's code may raise anything
        # of these) is a configuration that does not fit.
        kind = "" if isinstance(error, ValueError) else f"{type(error).__name__}: "
        message = f"{kind}{error}".splitlines()[0]
        raise ModelOptionError(None, f"model {name!r} on {shape}: {message}") from None
    expected = (2, shape["num_classes"])
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != expected:
        got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ModelOptionError(
            None, f"model {name!r} on {shape}: gives {got} for 2 images, not logits {expected}"
        )


def resolve_model_options(
    name: str,
    options: dict[str, Any] | None,
    shape: dict[str, int] | None = None,
    *,
    check: bool = True,
) -> dict[str, Any]:
    """Every option of model ``name``, checked and with its default filled in.

    Names and types of our models' options come from the factory's signature; a library's model
    or a user's factory takes its options as given, checked by building it. Given a dataset's
    ``shape`` (``num_classes``, ``in_channels``, ``image_size``), the model is built (on the CPU
    if small, else on the meta device) and given two images of that shape, so that constraints
    between options (an image size divisible by the patch size) and options a library's model
    does not take are found before any job. A ModelOptionError names the option. With
    ``check`` False, a library model's options are taken as given, unchecked (no import of the
    library), and nothing is built: the options of a configuration checked before.
    """
    # Integral floats as ints, as in every spec: `dim: 512.0` means `dim: 512`.
    options = normalize(dict(options or {}))
    if is_library_model(name):
        try:
            if check:
                check_library_options(name, options)
        except LibraryModelError as error:
            raise ModelOptionError(error.option, f"model {name!r}: {error}") from None
        resolved = options
    else:
        valid = model_options(name)
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
    if check and shape is not None:
        _check_fit(name, resolved, shape)
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
    if is_library_model(name):
        return build_library_model(name, **common, options=dict(options or {}))
    _check_names(name, options or {}, model_options(name))
    return MODELS[name](**common, **(options or {}))


def describe(model: nn.Module) -> dict[str, Any]:
    """What ``run.json`` records of a model: its parameter count and its tensors' names and
    shapes, ``[name, shape]`` in the order of ``model.named_parameters()`` (the Hessian's
    blocks; a list, as JSON objects are written with sorted keys)."""
    tensors = [[name, list(p.shape)] for name, p in model.named_parameters()]
    return {"parameters": sum(p.numel() for p in model.parameters()), "tensors": tensors}
