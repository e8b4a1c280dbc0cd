"""Eval-mode BatchNorm as the per-channel affine map it is, for cheaper Hessian products."""

from __future__ import annotations

import torch
from torch import nn


class AffineBatchNorm(nn.Module):
    """An eval-mode BatchNorm written as the affine map it is: ``x·s + t`` per channel with
    ``s = weight / sqrt(running_var + eps)`` and ``t = bias − running_mean·s``.

    Same function of (x, weight, bias), hence the same Hessian, but autograd's double-backward
    through it is plain products, not ``native_batch_norm_backward``'s: a Hessian-vector
    product of a BatchNorm CNN costs about 1.6x a gradient instead of 2.3x (benchmarks/
    hessian_cost.py). Takes over the original's parameters and buffers under the same names.
    """

    def __init__(self, norm: nn.modules.batchnorm._BatchNorm) -> None:
        super().__init__()
        self.weight, self.bias, self.eps = norm.weight, norm.bias, norm.eps
        self.register_buffer("running_mean", norm.running_mean)
        self.register_buffer("running_var", norm.running_var)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = torch.rsqrt(self.running_var + self.eps) * self.weight
        shift = self.bias - self.running_mean * scale
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return x * scale.view(shape) + shift.view(shape)


def affine_batch_norms(model: nn.Module) -> None:
    """Replace every affine BatchNorm with running statistics by :class:`AffineBatchNorm`.

    Only those that compute what torch's BatchNorm does: a subclass with its own ``forward``
    (timm's ``BatchNormAct2d`` adds an activation) is another function, and is kept."""
    for parent in model.modules():
        for name, child in parent.named_children():
            if (
                isinstance(child, nn.modules.batchnorm._BatchNorm)
                and type(child).forward is nn.modules.batchnorm._BatchNorm.forward
                and child.affine
                and child.track_running_stats
            ):
                setattr(parent, name, AffineBatchNorm(child))
