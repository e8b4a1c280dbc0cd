"""Models from outside the package: timm's, torchvision's and a user's own factory.

``archs.<name>.model`` names them: ``timm`` or ``torchvision``, with ``options.name`` the
library's model name and the other options its keyword arguments, or an import path
(``package.module:function``, see :mod:`infoopt.imports`) to a factory called with
``num_classes``, ``in_channels``, ``image_size`` and the options.

The data set's shape is always ours to give, never an option: timm gets ``num_classes`` and
``in_chans``, and ``img_size`` where its model takes one; torchvision gets ``num_classes``, and
``image_size`` where its model takes one, and for other than 3 channels its first 3-channel
convolution (the stem of every torchvision classifier) is replaced by one that takes the data
set's channels. No weights are ever downloaded (``pretrained=False``, ``weights=None``).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from typing import Any

from torch import nn

from infoopt.imports import ImportPathError, distribution_of, import_path, is_import_path

LIBRARIES = ("timm", "torchvision")

# Keyword arguments the data set or the no-download rule sets, per kind of model.
_RESERVED = {
    "timm": ("num_classes", "in_chans", "pretrained", "pretrained_cfg", "pretrained_cfg_overlay"),
    "torchvision": ("num_classes", "weights", "weights_backbone"),
    "import path": ("num_classes", "in_channels", "image_size"),
}
_UNEXPECTED = re.compile(r"unexpected keyword argument '(\w+)'")


class LibraryModelError(ValueError):
    """A library model that cannot be built; ``option`` is the culprit (None: the combination,
    ``"model"``: the import path itself)."""

    def __init__(self, option: str | None, message: str) -> None:
        super().__init__(message)
        self.option = option


def is_library_model(model: str) -> bool:
    """Whether ``model`` names a timm or torchvision model or a user's factory."""
    return model in LIBRARIES or is_import_path(model)


def model_package(model: str) -> dict[str, Any]:
    """What a store key needs of model ``model``'s code beyond ours: the distribution (and
    version) of timm, torchvision or a user's factory, as ``{"model_package": ...}``; empty for
    our own models, whose code NUMERICS versions. Upgrading that package recomputes its runs."""
    if not is_library_model(model):
        return {}
    return {"model_package": distribution_of(model)}


def unexpected_option(error: TypeError) -> str | None:
    """The keyword argument a TypeError says a callable does not take, if it says so."""
    match = _UNEXPECTED.search(str(error))
    return match.group(1) if match else None


def _suggest(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=3)
    return f"; did you mean {', '.join(close)}?" if close else ""


def _with_optional(build: Callable[..., nn.Module], kwargs: dict, key: str, value: int):
    """``build(**kwargs, key=value)``, or without ``key`` where the model does not take it."""
    if key in kwargs:
        return build(**kwargs)
    try:
        return build(**kwargs, **{key: value})
    except TypeError as error:
        if unexpected_option(error) != key:
            raise
    return build(**kwargs)


def _library_name(library: str, options: dict[str, Any], known: Callable[[], list[str]]) -> str:
    name = options.get("name")
    if not isinstance(name, str):
        raise LibraryModelError("name", f"model {library!r} needs options.name, a {library} model")
    names = known()
    if name not in names:
        raise LibraryModelError("name", f"unknown {library} model {name!r}{_suggest(name, names)}")
    return name


def _timm_names() -> list[str]:
    import timm

    return timm.list_models()


def _torchvision_names() -> list[str]:
    from torchvision import models

    return models.list_models(module=models)


def check_library_options(model: str, options: dict[str, Any]) -> None:
    """What can be checked without building: the model's name and the reserved options."""
    kind = model if model in LIBRARIES else "import path"
    for option in options:
        if option in _RESERVED[kind]:
            raise LibraryModelError(
                option,
                f"option {option} of model {model!r} is not an option: the data set sets the "
                "classes, channels and image size, and no weights are downloaded",
            )
    if model == "timm":
        _library_name("timm", options, _timm_names)
    elif model == "torchvision":
        _library_name("torchvision", options, _torchvision_names)
    else:
        try:
            factory = import_path(model)
        except ImportPathError as error:
            raise LibraryModelError("model", str(error)) from None
        if not callable(factory):
            raise LibraryModelError("model", f"{model!r} is not callable")


def _timm(num_classes: int, in_channels: int, image_size: int, options: dict) -> nn.Module:
    import timm

    name = _library_name("timm", options, _timm_names)
    kwargs = {key: value for key, value in options.items() if key != "name"}

    def build(**more: Any) -> nn.Module:
        return timm.create_model(
            name, pretrained=False, num_classes=num_classes, in_chans=in_channels, **more
        )

    return _with_optional(build, kwargs, "img_size", image_size)


def _replace_stem(model: nn.Module, in_channels: int) -> None:
    """Replace the first 3-channel convolution by one taking ``in_channels``."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d) and module.in_channels == 3 and module.groups == 1:
            parent_name, _, child = name.rpartition(".")
            stem = nn.Conv2d(
                in_channels,
                module.out_channels,
                module.kernel_size,
                stride=module.stride,
                padding=module.padding,
                dilation=module.dilation,
                bias=module.bias is not None,
                padding_mode=module.padding_mode,
                device=module.weight.device,
            )
            setattr(model.get_submodule(parent_name), child, stem)
            return
    raise LibraryModelError(
        None, f"has no 3-channel convolution to replace by one taking {in_channels} channels"
    )


def _torchvision(num_classes: int, in_channels: int, image_size: int, options: dict) -> nn.Module:
    from torchvision import models

    name = _library_name("torchvision", options, _torchvision_names)
    kwargs = {"num_classes": num_classes} | {k: v for k, v in options.items() if k != "name"}

    def build(**more: Any) -> nn.Module:
        return models.get_model(name, weights=None, **more)

    model = _with_optional(build, kwargs, "image_size", image_size)
    if in_channels != 3:
        _replace_stem(model, in_channels)
    return model


def build_library_model(
    model: str, num_classes: int, in_channels: int, image_size: int, options: dict[str, Any]
) -> nn.Module:
    """Build a timm or torchvision model, or call a user's factory (see the module's doc)."""
    check_library_options(model, options)
    if model == "timm":
        return _timm(num_classes, in_channels, image_size, options)
    if model == "torchvision":
        return _torchvision(num_classes, in_channels, image_size, options)
    shape = {"num_classes": num_classes, "in_channels": in_channels, "image_size": image_size}
    built = import_path(model)(**shape, **options)
    if not isinstance(built, nn.Module):
        raise LibraryModelError(
            "model", f"{model!r} returned a {type(built).__name__}, not a torch.nn.Module"
        )
    return built
