"""Lion (Chen et al. 2023) and its per-tensor tanh relaxation.

PAPER.md §4: under the Gaussian model Y ∈ {±1}, X | Y ~ N(Yμ, σ²), ``sign(x)`` is the Bayes
classifier of the direction Y and ``tanh(μx/σ²)`` its posterior mean. Lion applies the sign to
c = β1·m + (1−β1)·g; :class:`LionTanh` applies a tanh whose scale is set per tensor.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from infoopt.optim.base import LionFamily, StateLists, check_range


def dense_multipliers(scales: list[Tensor], like: list[Tensor]) -> list[Tensor]:
    """Tensors with the sizes and strides of ``like``, each filled with its 0-dim ``scales``.

    Multiplying a tensor list by a list of 0-dim tensors sends CUDA's foreach kernels down their
    per-tensor slow path (one launch per tensor); multipliers that match sizes and strides take
    the fused multi-tensor path, at the cost of writing and reading one constant per element.
    (On CPU the foreach ops loop over tensors anyway, and a single tensor takes one launch
    either way, so there the 0-dim list is cheaper.)
    Each multiplier is a strided view of its own chunk of one buffer: ``like`` must be dense, as
    c is (it copies the layout of the dense momentum), so the view stays inside its chunk.
    """
    sizes = [t.numel() for t in like]
    constant = torch.cat([s.expand(n) for s, n in zip(scales, sizes, strict=True)])
    chunks = constant.split(sizes)
    return [x.as_strided(t.shape, t.stride()) for x, t in zip(chunks, like, strict=True)]


class Lion(LionFamily):
    """Lion: ``θ ← θ·(1 − lr·λ) − lr·sign(β1·m + (1−β1)·g)``, then ``m ← β2·m + (1−β2)·g``.

    Weight decay λ is decoupled and multiplied by lr, exactly as ``lion_pytorch.Lion`` (whose
    float32 steps this reproduces bit for bit). ``foreach`` selects the multi-tensor or the
    per-tensor implementation (None: multi-tensor when all parameters are on CUDA).
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-4,
        betas: Iterable[float] = (0.9, 0.99),
        weight_decay: float = 0.0,
        *,
        foreach: bool | None = None,
    ) -> None:
        defaults = {"lr": lr, "betas": betas, "weight_decay": weight_decay}
        super().__init__(params, defaults, foreach)

    def _direction(
        self,
        group: dict[str, Any],
        step: int,
        c: list[Tensor],
        grads: list[Tensor],
        states: StateLists,
    ) -> list[Tensor]:
        torch._foreach_sign_(c)
        return c


class LionTanh(LionFamily):
    """Lion with ``sign(c)`` replaced by ``tanh(κ · c / RMS(c))``, RMS taken per tensor.

    ``RMS(c) = sqrt(mean(c²))`` makes the argument scale-free: κ is the argument of a coordinate
    that is one RMS away from zero, so κ = 3 moves such a coordinate by tanh(3) ≈ 0.995·lr and
    damps only the coordinates of c much smaller than the tensor's typical size (the ones whose
    sign the Gaussian model is least sure of). As κ → ∞ the update is exactly Lion's: in float32
    ``tanh`` rounds to ±1 once its argument exceeds about 9.

    Numerics, in place of an additive eps: the per-tensor scale ``κ·sqrt(n)/‖c‖₂`` is clamped to
    the largest finite value of the dtype. For an all-zero c (a zero gradient and momentum) the
    scale is clamped from inf, so the update is ``tanh(0 · finite) = 0`` rather than NaN, and no
    eps biases the scale of any non-zero tensor. ``‖c‖₂`` is accumulated in the parameter dtype:
    a tensor whose sum of squares overflows (float32: ‖c‖₂ > 1.8e19) gets a zero update, not NaN.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-4,
        betas: Iterable[float] = (0.9, 0.99),
        weight_decay: float = 0.0,
        kappa: float = 3.0,
        *,
        foreach: bool | None = None,
    ) -> None:
        defaults = {"lr": lr, "betas": betas, "weight_decay": weight_decay, "kappa": kappa}
        super().__init__(params, defaults, foreach)

    def _check_group(self, group: dict[str, Any]) -> None:
        group["kappa"] = check_range("kappa", group["kappa"])

    def _direction(
        self,
        group: dict[str, Any],
        step: int,
        c: list[Tensor],
        grads: list[Tensor],
        states: StateLists,
    ) -> list[Tensor]:
        # Per-tensor scales stay 0-dim device tensors: no host synchronisation.
        scales = list(torch._foreach_norm(c))
        torch._foreach_reciprocal_(scales)
        torch._foreach_mul_(scales, [group["kappa"] * math.sqrt(t.numel()) for t in c])
        torch._foreach_clamp_max_(scales, torch.finfo(c[0].dtype).max)
        if len(c) > 1 and c[0].device.type != "cpu":
            scales = dense_multipliers(scales, c)
        torch._foreach_mul_(c, scales)
        torch._foreach_tanh_(c)
        return c
