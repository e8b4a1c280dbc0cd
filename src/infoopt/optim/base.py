"""Mechanics shared by the Lion family: param groups, state, closure, foreach or per-tensor loop.

Every member takes the same step (Chen et al. 2023, decoupled weight decay as in lion-pytorch)

    c = β1·m + (1−β1)·g          (the interpolated momentum, Lion's "observation" of the direction)
    m ← β2·m + (1−β2)·g
    u = direction(c, ...)         sign(c) for Lion, a tanh for the variants
    θ ← θ·(1 − lr·λ) − lr·u

and differs only in ``direction``. The step and every direction are written once, with
``torch._foreach_*`` ops over a list of tensors of one device and dtype: the multi-tensor path
passes a whole batch (on CUDA, fused multi-tensor kernels), the per-tensor loop one tensor at a
time. Both run the same ops on each tensor, so on CPU (where foreach ops fall back to per-tensor
ops) the two paths are bit-identical.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

StateLists = dict[str, list[Tensor]]


def _is_real(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True)
class Interval:
    """The finite numbers from ``low`` to ``high`` (each end included unless open)."""

    low: float
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: object) -> bool:
        if not (_is_real(value) and math.isfinite(value)):
            return False
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def __str__(self) -> str:
        if self.high == math.inf:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
        return f"in {left}{self.low:g}, {self.high:g}{right}"

    def check(self, name: str, value: object) -> float:
        """``value`` as a float, else a ValueError naming ``name``."""
        if value not in self:
            raise ValueError(f"{name} must be a finite number {self}, got {value!r}")
        return float(value)


NONNEGATIVE = Interval(0.0)
UNIT = Interval(0.0, 1.0, high_open=True)

# The allowed values of the hyper-parameters that every optimizer names alike, written once: our
# classes check them, and the registry (infoopt.optim.registry) checks them before anything is
# built, naming the key. They agree with torch's own checks: lr = 0 and eps = 0 are allowed, as
# torch allows them (a frozen baseline; LionBayes floors its denominator without eps).
RANGES: dict[str, Interval] = {
    "lr": NONNEGATIVE,
    "momentum": NONNEGATIVE,
    "weight_decay": NONNEGATIVE,
    "eps": NONNEGATIVE,
    "kappa": Interval(0.0, low_open=True),
    "beta3": UNIT,
}


def check_range(name: str, value: object) -> float:
    """``value`` as a float in the range ``RANGES[name]``, else a ValueError naming ``name``."""
    return RANGES[name].check(name, value)


def check_betas(value: object) -> tuple[float, float]:
    """Two coefficients in [0, 1); a JSON list is accepted as well as a tuple."""
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ValueError(f"betas must be a pair of numbers in [0, 1), got {value!r}")
    betas = tuple(value)
    if len(betas) != 2:
        raise ValueError(f"betas must be a pair of numbers in [0, 1), got {value!r}")
    return UNIT.check("betas[0]", betas[0]), UNIT.check("betas[1]", betas[1])


class LionFamily(torch.optim.Optimizer, metaclass=abc.ABCMeta):
    """Base class of Lion and its tanh variants; see the module docstring for the shared step.

    Subclasses set ``extra_state`` (names of zero-initialised state tensors besides ``exp_avg``),
    implement ``_direction`` (over lists of tensors), and may override ``_check_group``
    (their own hyper-parameters) and ``_c_scale`` (a positive factor on c that a variant needs
    anyway; folded into c's two coefficients, it costs no extra pass over the tensors).

    ``lerp_momentum = True`` updates m with one ``lerp_`` (m + (1−β2)·(g − m): one pass over the
    tensors instead of two) rather than Lion's ``mul_``/``add_``, which rounds differently; a
    variant whose κ → ∞ limit must be Lion bit for bit keeps Lion's.

    ``foreach=None`` picks the multi-tensor path when every parameter of a group is on CUDA, like
    torch's own optimizers. Each parameter's state holds ``step`` (a Python int, the number of
    steps it has taken: a parameter without a gradient takes none) and its tensors.
    """

    extra_state: tuple[str, ...] = ()
    lerp_momentum: bool = False

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        defaults: dict[str, Any],
        foreach: bool | None,
    ) -> None:
        super().__init__(params, {**defaults, "foreach": foreach})

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        if any(torch.is_complex(p) for p in group["params"]):
            raise ValueError(f"{type(self).__name__} does not support complex parameters")
        # Validated per group, so a group overriding lr or betas gets the same checks.
        if group["foreach"] is not None and not isinstance(group["foreach"], bool):
            raise ValueError(f"foreach must be True, False or None, got {group['foreach']!r}")
        check_range("lr", group["lr"])
        check_range("weight_decay", group["weight_decay"])
        group["betas"] = check_betas(group["betas"])
        self._check_group(group)

    def _check_group(self, group: dict[str, Any]) -> None:
        """Validate (and normalise in place) the subclass's own hyper-parameters of ``group``."""

    def _c_scale(self, group: dict[str, Any], step: int) -> float:
        """Positive factor multiplying c before ``direction``; 1 keeps Lion's c bit for bit."""
        return 1.0

    @abc.abstractmethod
    def _direction(
        self,
        group: dict[str, Any],
        step: int,
        c: list[Tensor],
        grads: list[Tensor],
        states: StateLists,
    ) -> list[Tensor]:
        """The update directions of tensors of one device and dtype (a batch, or a single tensor
        in the per-tensor loop), with foreach ops; may overwrite ``c`` and update the extra
        state. ``states["exp_avg"]`` already holds the new momenta m_t."""

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One optimizer step; ``closure`` re-evaluates the loss with gradients enabled."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            batches = self._gather(group)
            foreach = group["foreach"]
            if foreach is None:
                foreach = all(p.is_cuda for p in group["params"])
            for step, params, grads, states in batches:
                if foreach:
                    self._step_foreach(group, step, params, grads, states)
                else:
                    self._step_loop(group, step, params, grads, states)
        return loss

    def _gather(
        self, group: dict[str, Any]
    ) -> list[tuple[int, list[Tensor], list[Tensor], StateLists]]:
        """Parameters that have a gradient, with their state, batched by (device, dtype, step):
        a foreach op needs one device and dtype, and the step sets the bias corrections."""
        names = ("exp_avg", *self.extra_state)
        batches: dict[tuple, tuple[int, list[Tensor], list[Tensor], StateLists]] = {}
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
            state = self.state[p]
            if not state:
                state["step"] = 0
                for name in names:
                    state[name] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["step"] += 1
            key = (p.device, p.dtype, state["step"])
            if key not in batches:
                batches[key] = (state["step"], [], [], {name: [] for name in names})
            _, params, grads, states = batches[key]
            params.append(p)
            grads.append(p.grad)
            for name in names:
                states[name].append(state[name])
        return list(batches.values())

    def _step_foreach(
        self,
        group: dict[str, Any],
        step: int,
        params: list[Tensor],
        grads: list[Tensor],
        states: StateLists,
    ) -> None:
        """The multi-tensor path: each op of :meth:`_update` once over the whole batch."""
        self._update(group, step, params, grads, states)

    def _step_loop(
        self,
        group: dict[str, Any],
        step: int,
        params: list[Tensor],
        grads: list[Tensor],
        states: StateLists,
    ) -> None:
        """The per-tensor path: :meth:`_update` on one tensor at a time (one-element lists), each
        through all of its ops before the next."""
        for i in range(len(params)):
            one = slice(i, i + 1)
            state = {name: tensors[one] for name, tensors in states.items()}
            self._update(group, step, params[one], grads[one], state)

    def _update(
        self,
        group: dict[str, Any],
        step: int,
        params: list[Tensor],
        grads: list[Tensor],
        states: StateLists,
    ) -> None:
        """The step of the module docstring on tensors of one device, dtype and step count."""
        beta1, beta2 = group["betas"]
        scale = self._c_scale(group, step)
        exp_avgs = states["exp_avg"]
        c = torch._foreach_mul(exp_avgs, beta1 * scale)
        torch._foreach_add_(c, grads, alpha=(1.0 - beta1) * scale)
        if self.lerp_momentum:
            torch._foreach_lerp_(exp_avgs, grads, 1.0 - beta2)
        else:
            torch._foreach_mul_(exp_avgs, beta2)
            torch._foreach_add_(exp_avgs, grads, alpha=1.0 - beta2)
        updates = self._direction(group, step, c, grads, states)
        if group["weight_decay"] != 0.0:
            torch._foreach_mul_(params, 1.0 - group["lr"] * group["weight_decay"])
        torch._foreach_add_(params, updates, alpha=-group["lr"])
