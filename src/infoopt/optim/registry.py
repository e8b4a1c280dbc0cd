"""Optimizer registry: an algorithm's name -> factory taking JSON hyper-parameters.

An algorithm is named one of two ways (:func:`optimizer_factory`): a bare name is one of ours
(``OPTIMIZERS``: torch's SGD, Adam and AdamW, and the Lion family); a dotted name is an import
path (:mod:`infoopt.imports`) of any ``torch.optim.Optimizer`` subclass: ``torch.optim.RAdam``,
``torch.optim.Muon``, or a class of a package the user installed.

A factory resolves hyper-parameters before anything is built (:meth:`OptimizerFactory.resolve`):
their names come from the class's signature, their types from its defaults, their ranges (ours
only) from ``RANGES`` and, for everything else (a foreign class's own checks, constraints between
values such as SGD's Nesterov momentum), from constructing the class on a dummy parameter. Every
default is filled in, so ``optimizer.param_groups`` and a run's spec record the complete setting,
and the configuration check of the workflow raises the same errors before any job exists.
``foreach`` (True, False or None) is accepted by each of ours: it chooses an implementation, not a
hyper-parameter.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from infoopt.imports import import_path, is_import_path
from infoopt.optim.base import RANGES, check_betas
from infoopt.optim.lion import Lion, LionTanh
from infoopt.optim.snr import LionBayes, LionSoft


class HyperParameterError(ValueError):
    """A hyper-parameter an optimizer cannot take; ``name`` is it (None: a combination)."""

    def __init__(self, name: str | None, message: str) -> None:
        super().__init__(message)
        self.name = name


def dummy_parameters() -> list[torch.Tensor]:
    """What a constructor is tried on: one matrix, since some optimizers (Muon) take only
    matrices."""
    return [torch.zeros(2, 2, requires_grad=True)]


def _is_json(value: object) -> bool:
    """Whether ``value`` can be written in a config and recorded in a run's spec."""
    if value is None or isinstance(value, bool | int | str):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list | tuple):
        return all(_is_json(item) for item in value)
    return False


def _check_value(optimizer: str, name: str, value: object, default: object, ours: bool) -> object:
    """``value`` normalised to the type of ``default``, else a HyperParameterError.

    A default of None says nothing of the type: the constructor checks such a value."""

    def fail(expected: str) -> HyperParameterError:
        hint = ""
        if isinstance(value, str):
            # YAML 1.1 reads 1e-3 (no dot) as text.
            hint = " (a string: write numbers like 1.0e-3, with a dot, in YAML)"
        message = f"{optimizer}: {name} must be {expected}, got {value!r}{hint}"
        return HyperParameterError(name, message)

    if ours and name == "betas":
        try:
            return check_betas(value)
        except ValueError as error:
            raise HyperParameterError(name, f"{optimizer}: {error}") from None
    if ours and name == "foreach" or default is None:
        if ours and value is not None and not isinstance(value, bool):
            raise fail("true, false or null")
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise fail("true or false")
        return value
    if isinstance(default, str):
        if not isinstance(value, str):
            raise fail("a string")
        return value
    if isinstance(default, tuple | list):
        if isinstance(value, str) or not isinstance(value, list | tuple):
            raise fail(f"a list of {len(default)}")
        if len(value) != len(default):
            raise fail(f"a list of {len(default)}")
        return tuple(
            _check_value(optimizer, name, item, item_default, ours)
            for item, item_default in zip(value, default, strict=True)
        )
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise fail("a finite number")
    if isinstance(default, int):
        if not isinstance(value, int):
            raise fail("an integer")
        return value
    if ours and name in RANGES and value not in RANGES[name]:
        raise fail(f"a number {RANGES[name]}")
    return float(value)


@dataclass(frozen=True)
class OptimizerFactory:
    """Builds optimizer ``name`` (class ``cls``) from keyword hyper-parameters.

    ``defaults`` maps every optional hyper-parameter to its default; ``required`` names the
    ones without a default; ``open`` says the class takes further keywords (``**kwargs``).
    ``ours`` adds our ranges (``RANGES``) to the class's own checks.
    """

    name: str
    cls: type[torch.optim.Optimizer]
    defaults: Mapping[str, Any]
    required: tuple[str, ...] = field(default=())
    ours: bool = True
    open: bool = False

    @property
    def hparams(self) -> tuple[str, ...]:
        """Every valid hyper-parameter name."""
        return (*self.required, *self.defaults)

    def resolve(self, hparams: Mapping[str, Any], construct: bool = True) -> dict[str, Any]:
        """Every hyper-parameter, checked and with its default filled in; a
        HyperParameterError names the first one that is unknown, missing or out of range, or,
        with ``construct``, the constructor's own objection on a dummy parameter."""
        unknown = sorted(set(hparams) - set(self.hparams))
        if unknown and not self.open:
            raise HyperParameterError(
                unknown[0],
                f"unknown hyper-parameter(s) {', '.join(map(repr, unknown))} for optimizer "
                f"{self.name!r}; valid: {', '.join(self.hparams)}",
            )
        missing = [name for name in self.required if name not in hparams]
        if missing:
            raise HyperParameterError(
                missing[0],
                f"optimizer {self.name!r} requires hyper-parameter(s) {', '.join(missing)}",
            )
        values = {**self.defaults, **hparams}
        resolved = {
            name: _check_value(self.name, name, value, self.defaults.get(name, 0.0), self.ours)
            for name, value in values.items()
        }
        error = self._refusal(resolved) if construct else None
        if error is not None:
            # Ours name each value's key through RANGES already: what is left is a combination.
            culprit = None if self.ours else self._culprit(hparams, resolved)
            raise HyperParameterError(culprit, f"{self.name}: {error}")
        return resolved

    def _refusal(self, resolved: Mapping[str, Any]) -> str | None:
        """The constructor's objection to ``resolved`` on a dummy parameter, in one line."""
        try:
            self.cls(dummy_parameters(), **resolved)
        except (ValueError, TypeError) as error:
            return " ".join(str(error).split())
        return None

    def _culprit(self, given: Mapping[str, Any], resolved: Mapping[str, Any]) -> str | None:
        """The one given hyper-parameter a foreign constructor refuses on its own (None:
        several, or only a combination): the config error then names its key."""
        defaults = {name: resolved[name] for name in resolved if name not in given}
        required = {name: resolved[name] for name in self.required}
        alone = [
            name
            for name in given
            if self._refusal({**defaults, **required, name: resolved[name]}) is not None
        ]
        return alone[0] if len(alone) == 1 else None

    def __call__(
        self, params: Iterable[torch.Tensor] | Iterable[dict[str, Any]], **hparams: Any
    ) -> torch.optim.Optimizer:
        return self.cls(params, **self.resolve(hparams))


def _signature(cls: type) -> tuple[dict[str, Any], tuple[str, ...], bool]:
    """(keyword defaults, required names, takes **kwargs) of a class's constructor, without
    ``params`` and without defaults that no config could write (callables, objects)."""
    defaults: dict[str, Any] = {}
    required: list[str] = []
    open_ = False
    parameters = list(inspect.signature(cls).parameters.values())[1:]
    for p in parameters:
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            open_ = True
        elif p.kind is inspect.Parameter.VAR_POSITIONAL:
            continue
        elif p.default is inspect.Parameter.empty:
            required.append(p.name)
        elif _is_json(p.default):
            # torch writes ``weight_decay: float = 0``: the annotation, not the default, says
            # that a float is meant.
            floating = isinstance(p.default, int) and "float" in str(p.annotation)
            defaults[p.name] = float(p.default) if floating else p.default
    return defaults, tuple(required), open_


def _ours(name: str, cls: type[torch.optim.Optimizer]) -> OptimizerFactory:
    return OptimizerFactory(name, cls, _signature(cls)[0])


_SGD = {"momentum": 0.0, "nesterov": False, "weight_decay": 0.0, "dampening": 0.0}
_ADAM = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8}

OPTIMIZERS: dict[str, OptimizerFactory] = {
    "sgd": OptimizerFactory("sgd", torch.optim.SGD, {**_SGD, "foreach": None}, required=("lr",)),
    "adam": OptimizerFactory(
        "adam", torch.optim.Adam, {**_ADAM, "weight_decay": 0.0, "foreach": None}
    ),
    "adamw": OptimizerFactory(
        "adamw", torch.optim.AdamW, {**_ADAM, "weight_decay": 1e-2, "foreach": None}
    ),
    "lion": _ours("lion", Lion),
    "lion_tanh": _ours("lion_tanh", LionTanh),
    "lion_bayes": _ours("lion_bayes", LionBayes),
    "lion_soft": _ours("lion_soft", LionSoft),
}


def optimizer_factory(algorithm: str) -> OptimizerFactory:
    """The factory of ``algorithm``: one of ours by name, or a class by import path.

    A ValueError (an ImportPathError for an import that fails) says what is wrong in one line.
    """
    if not is_import_path(algorithm):
        if algorithm not in OPTIMIZERS:
            raise ValueError(
                f"unknown optimizer {algorithm!r}; valid optimizers: {', '.join(OPTIMIZERS)}, "
                "or an import path such as torch.optim.RAdam"
            )
        return OPTIMIZERS[algorithm]
    cls = import_path(algorithm)
    if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
        raise ValueError(f"{algorithm!r} is not a torch.optim.Optimizer subclass")
    closure = inspect.signature(cls.step).parameters.get("closure")
    if closure is not None and closure.default is inspect.Parameter.empty:
        raise ValueError(
            f"{algorithm!r} needs a closure that re-evaluates the loss at every step, which the "
            "training loop does not give (it steps once per batch)"
        )
    defaults, required, open_ = _signature(cls)
    return OptimizerFactory(algorithm, cls, defaults, required, ours=False, open=open_)


def build_optimizer(
    name: str, params: Iterable[torch.Tensor] | Iterable[dict[str, Any]], **hparams: Any
) -> torch.optim.Optimizer:
    """Optimizer ``name`` (ours, or an import path) over ``params`` with ``hparams`` (JSON
    values; missing ones default)."""
    return optimizer_factory(name)(params, **hparams)
