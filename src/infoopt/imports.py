"""Import paths in the configuration: the one way a config names code that is not ours.

A registry name without a dot or colon (``sgd``, ``resnet18``) is one of ours. Anything else is
an import path: ``package.module.Attribute`` (the last dot separates the attribute) or
``package.module:attribute`` (the colon does; the attribute may be dotted). Both forms name the
same object, so ``torch.optim.RAdam`` and ``torch.optim:RAdam`` are one algorithm; the
configuration keeps the text the user wrote, and :func:`distribution_of` names the installed
package (and version) that provides it, for provenance and store keys.

>>> import_path("torch.optim.SGD").__name__
'SGD'
>>> is_import_path("sgd"), is_import_path("torch.optim.SGD")
(False, True)
"""

from __future__ import annotations

import functools
import importlib
from importlib import metadata
from typing import Any


class ImportPathError(ValueError):
    """An import path that names nothing importable; the message says which part is missing."""


def is_import_path(name: str) -> bool:
    """Whether ``name`` is an import path rather than a registry name of ours."""
    return "." in name or ":" in name


def _split(path: str) -> tuple[str, list[str]]:
    """The module part and the attribute chain of ``path``."""
    if ":" in path:
        module, _, attribute = path.partition(":")
        return module, attribute.split(".")
    module, _, attribute = path.rpartition(".")
    return module, [attribute]


def import_path(path: str) -> Any:
    """The object ``path`` names; an ImportPathError says what is missing, in one line."""
    module_name, attributes = _split(path)
    if not module_name or not all(attributes) or path.count(":") > 1:
        raise ImportPathError(
            f"{path!r} is not an import path (write package.module.Name or package.module:name)"
        )
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        raise ImportPathError(
            f"cannot import {path!r}: no module named {error.name!r} (is its package installed?)"
        ) from None
    except Exception as error:  # a user's module may raise anything while importing
        raise ImportPathError(
            f"cannot import {path!r}: importing {module_name!r} raised "
            f"{type(error).__name__}: {error}"
        ) from None
    for depth, attribute in enumerate(attributes):
        if not hasattr(obj, attribute):
            owner = ".".join([module_name, *attributes[:depth]])
            raise ImportPathError(
                f"cannot import {path!r}: {owner!r} has no attribute {attribute!r}"
            )
        obj = getattr(obj, attribute)
    return obj


@functools.cache
def _packages_distributions() -> dict[str, list[str]]:
    """Top-level package -> distributions; cached, as reading every installed distribution's
    metadata takes a second, and a run's spec asks for it."""
    return metadata.packages_distributions()


def distribution_of(path: str) -> dict[str, str | None]:
    """The installed distribution that provides ``path``'s top-level package (or the module
    ``path`` itself, given a bare module name), and its version.

    ``{"distribution": None, "version": None}`` for a module that no installed distribution
    provides (a user's own file on ``PYTHONPATH``).
    """
    top = (_split(path)[0] if is_import_path(path) else path).split(".")[0]
    names = _packages_distributions().get(top, [])
    if not names:
        return {"distribution": None, "version": None}
    name = sorted(names)[0]
    return {"distribution": name, "version": metadata.version(name)}
