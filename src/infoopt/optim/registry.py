"""Optimizer registry: name -> factory taking JSON hyper-parameters.

A factory resolves hyper-parameters before anything is built (:meth:`OptimizerFactory.resolve`):
their names come from the algorithm's signature, their types from its defaults, their ranges from
``RANGES`` and, for constraints between them (e.g. SGD's Nesterov momentum), from constructing the
algorithm on a dummy parameter. Every default is filled in, so ``optimizer.param_groups`` and a
run's spec record the complete setting, and the configuration check of the workflow raises the
same errors before any job exists. ``foreach`` (True, False or None) is accepted by every entry:
it chooses an implementation, not a hyper-parameter.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from infoopt.optim.base import check_betas
from infoopt.optim.lion import Lion, LionTanh
from infoopt.optim.snr import LionBayes, LionSoft


class HyperParameterError(ValueError):
    """A hyper-parameter an optimizer cannot take; ``name`` is it (None: a combination)."""

    def __init__(self, name: str | None, message: str) -> None:
        super().__init__(message)
        self.name = name


# Allowed values of the hyper-parameters every algorithm names alike: (test, description).
RANGES: dict[str, tuple[Callable[[float], bool], str]] = {
    "lr": (lambda v: v > 0, "> 0"),
    "momentum": (lambda v: v >= 0, ">= 0"),
    "dampening": (lambda v: 0 <= v <= 1, "in [0, 1]"),
    "weight_decay": (lambda v: v >= 0, ">= 0"),
    "eps": (lambda v: v > 0, "> 0"),
    "kappa": (lambda v: v > 0, "> 0"),
    "beta3": (lambda v: 0 <= v < 1, "in [0, 1)"),
}


def _check_value(optimizer: str, name: str, value: object, default: object) -> object:
    """``value`` normalised to the type of ``default``, else a HyperParameterError."""

    def fail(expected: str) -> HyperParameterError:
        hint = ""
        if isinstance(value, str):
            # YAML 1.1 reads 1e-3 (no dot) as text.
            hint = " (a string: write numbers like 1.0e-3, with a dot, in YAML)"
        message = f"{optimizer}: {name} must be {expected}, got {value!r}{hint}"
        return HyperParameterError(name, message)

    if name == "betas":
        try:
            return check_betas(value)
        except ValueError as error:
            raise HyperParameterError(name, f"{optimizer}: {error}") from None
    if name == "foreach":
        if value is not None and not isinstance(value, bool):
            raise fail("true, false or null")
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise fail("true or false")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise fail("a finite number")
    if name in RANGES and not RANGES[name][0](value):
        raise fail(f"a number {RANGES[name][1]}")
    return float(value)


@dataclass(frozen=True)
class OptimizerFactory:
    """Builds optimizer ``name`` (class ``cls``) from keyword hyper-parameters.

    ``defaults`` maps every optional hyper-parameter to its default; ``required`` names the
    ones without a default.
    """

    name: str
    cls: type[torch.optim.Optimizer]
    defaults: Mapping[str, Any]
    required: tuple[str, ...] = field(default=())

    @property
    def hparams(self) -> tuple[str, ...]:
        """Every valid hyper-parameter name."""
        return (*self.required, *self.defaults)

    def resolve(self, hparams: Mapping[str, Any]) -> dict[str, Any]:
        """Every hyper-parameter, checked and with its default filled in; a
        HyperParameterError names the first one that is unknown, missing or out of range."""
        unknown = sorted(set(hparams) - set(self.hparams))
        if unknown:
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
            name: _check_value(self.name, name, value, self.defaults.get(name, 0.0))
            for name, value in values.items()
        }
        try:
            self.cls([torch.zeros(1, requires_grad=True)], **resolved)
        except ValueError as error:
            raise HyperParameterError(None, f"{self.name}: {error}") from None
        return resolved

    def __call__(
        self, params: Iterable[torch.Tensor] | Iterable[dict[str, Any]], **hparams: Any
    ) -> torch.optim.Optimizer:
        return self.cls(params, **self.resolve(hparams))


def _signature_defaults(cls: type[torch.optim.Optimizer]) -> dict[str, Any]:
    """The keyword defaults of one of our classes (everything but ``params``)."""
    parameters = inspect.signature(cls).parameters.values()
    return {p.name: p.default for p in parameters if p.name != "params"}


def _ours(name: str, cls: type[torch.optim.Optimizer]) -> OptimizerFactory:
    return OptimizerFactory(name, cls, _signature_defaults(cls))


_SGD = {"momentum": 0.0, "nesterov": False, "weight_decay": 0.0, "dampening": 0.0}
_ADAM = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8}

OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
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


def build_optimizer(
    name: str, params: Iterable[torch.Tensor] | Iterable[dict[str, Any]], **hparams: Any
) -> torch.optim.Optimizer:
    """Optimizer ``name`` over ``params`` with ``hparams`` (JSON values; missing ones default)."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; valid optimizers: {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[name](params, **hparams)
