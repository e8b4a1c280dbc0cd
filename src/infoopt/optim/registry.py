"""Optimizer registry: name -> factory taking JSON hyper-parameters.

A factory checks the names and types of the hyper-parameters (so a config typo names itself),
fills the defaults and passes every value explicitly, so ``optimizer.param_groups`` records the
complete setting. Value ranges are checked by the optimizer classes (ours and torch's alike
raise ``ValueError``). ``foreach`` (True, False or None) is accepted by every entry: it chooses an
implementation, not a hyper-parameter.
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


def _check_value(optimizer: str, name: str, value: object, default: object) -> object:
    """``value`` normalised to the type of ``default``, else a ValueError naming ``name``."""
    if name == "betas":
        return check_betas(value)
    if name == "foreach":
        if value is not None and not isinstance(value, bool):
            raise ValueError(f"{optimizer}: foreach must be true, false or null, got {value!r}")
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"{optimizer}: {name} must be true or false, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{optimizer}: {name} must be a finite number, got {value!r}")
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

    def __call__(
        self, params: Iterable[torch.Tensor] | Iterable[dict[str, Any]], **hparams: Any
    ) -> torch.optim.Optimizer:
        unknown = sorted(set(hparams) - set(self.hparams))
        if unknown:
            raise ValueError(
                f"unknown hyper-parameter(s) {', '.join(map(repr, unknown))} for optimizer "
                f"{self.name!r}; valid: {', '.join(self.hparams)}"
            )
        missing = [name for name in self.required if name not in hparams]
        if missing:
            raise ValueError(
                f"optimizer {self.name!r} requires hyper-parameter(s) {', '.join(missing)}"
            )
        values = {**self.defaults, **hparams}
        checked = {
            name: _check_value(self.name, name, value, self.defaults.get(name, 0.0))
            for name, value in values.items()
        }
        return self.cls(params, **checked)


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
