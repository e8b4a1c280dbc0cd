"""Hessian-vector products of the mean cross-entropy over a fixed evaluation set.

The loss is ``L(θ) = (1/N) Σ_i CE(f_θ(x_i), y_i)`` with the model in eval mode (BatchNorm uses
its running statistics, dropout is off), so L is a weighted sum of per-micro-batch means
``L = Σ_m (N_m / N) L_m`` and ``Hv = Σ_m (N_m / N) H_m v`` holds exactly: micro-batching only
bounds memory. Each micro-batch's gradient is built once with ``create_graph=True`` and every
product double-backwards through it; with a single micro-batch that graph is kept between calls.

Two kinds of product:

- :meth:`HessianOperator.matmul`: ``H v`` for vectors of the whole flat parameter space;
- :meth:`HessianOperator.block_matmul`: ``H_bb v_b`` for vectors of one block ``b``. Autograd then
  differentiates only ``∂L/∂θ_b`` and only with respect to ``θ_b``, so it skips every layer
  below block ``b``: far cheaper than a full product with a zero-padded vector.

``vector_batch`` vectors go through one double-backward together (``torch.func.vmap`` over
``torch.autograd.grad``, which has real batching rules for convolutions and BatchNorm, unlike
``is_grads_batched``'s legacy vmap); ``vector_batch=1`` loops over the vectors instead, which is
faster on CPU (see ``benchmarks/hessian_cost.py``).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from infoopt.hessian.options import DTYPE_NAMES
from infoopt.hessian.space import ParameterSpace

DTYPES = {name: getattr(torch, name) for name in DTYPE_NAMES}


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


def _affine_batch_norms(model: nn.Module) -> None:
    """Replace every affine BatchNorm with running statistics by :class:`AffineBatchNorm`."""
    for parent in model.modules():
        for name, child in parent.named_children():
            if (
                isinstance(child, nn.modules.batchnorm._BatchNorm)
                and child.affine
                and child.track_running_stats
            ):
                setattr(parent, name, AffineBatchNorm(child))


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        if dtype not in DTYPES.values():
            raise ValueError(f"unsupported dtype {dtype}; valid: {', '.join(DTYPES)}")
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; valid: {', '.join(DTYPES)}")
    return DTYPES[dtype]


class HessianOperator:
    """The Hessian of the mean cross-entropy of ``model`` on ``(x, y)``, as products with vectors.

    Works on a copy of ``model`` cast to ``dtype`` on ``device`` (default: ``x``'s device) and
    put in eval mode; the caller's model is left untouched. ``full_products`` and
    ``block_products`` count the vectors multiplied so far.
    """

    def __init__(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        micro_batch_size: int | None = None,
        vector_batch: int = 1,
        dtype: str | torch.dtype = torch.float32,
        device: str | torch.device | None = None,
    ) -> None:
        if len(x) != len(y) or len(y) == 0:
            raise ValueError(f"need as many labels as inputs (> 0), got {len(x)} and {len(y)}")
        if micro_batch_size is not None and micro_batch_size < 1:
            raise ValueError(f"micro_batch_size must be positive, got {micro_batch_size}")
        if vector_batch < 1:
            raise ValueError(f"vector_batch must be positive, got {vector_batch}")
        self.dtype = resolve_dtype(dtype)
        self.device = torch.device(device) if device is not None else x.device
        self.model = copy.deepcopy(model).to(device=self.device, dtype=self.dtype).eval()
        _affine_batch_norms(self.model)
        self.space = ParameterSpace.of(self.model)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.x = x.to(self.device, self.dtype) if x.is_floating_point() else x.to(self.device)
        self.y = y.to(self.device)
        self.vector_batch = vector_batch
        size = len(y) if micro_batch_size is None else min(micro_batch_size, len(y))
        self.micro_batches = [slice(start, start + size) for start in range(0, len(y), size)]
        self._kept: list[torch.Tensor | None] | None = None
        self.full_products = 0
        self.block_products = 0

    @property
    def num_samples(self) -> int:
        return len(self.y)

    def _batch_loss(self, batch: slice) -> torch.Tensor:
        """This micro-batch's share of the mean loss: (N_m / N) · mean CE on it."""
        weight = len(self.y[batch]) / self.num_samples
        return F.cross_entropy(self.model(self.x[batch]), self.y[batch]) * weight

    def _gradients(self, batch: slice) -> list[torch.Tensor | None]:
        """``∂L_m/∂θ`` with its graph; None for a block whose gradient is constant in θ."""
        if self._kept is not None:
            return self._kept
        with sdpa_kernel(SDPBackend.MATH):
            grads = torch.autograd.grad(
                self._batch_loss(batch), self.params, create_graph=True, allow_unused=True
            )
        grads = [g if g is not None and g.requires_grad else None for g in grads]
        if len(self.micro_batches) == 1:
            self._kept = grads
        return grads

    def _accumulate(
        self, blocks: Sequence[int], cotangents: Sequence[torch.Tensor], inputs: Sequence[int]
    ) -> list[torch.Tensor]:
        """``Σ_m ∂/∂θ_inputs Σ_b <∂L_m/∂θ_b, v_b>`` over ``blocks`` for a batch of cotangents
        ``v_b`` (V, *shape_b) each: one (V, *shape) tensor per input block."""
        count = len(cotangents[0])
        params = [self.params[i] for i in inputs]
        sums = [torch.zeros(count, *p.shape, device=self.device, dtype=self.dtype) for p in params]
        for batch in self.micro_batches:
            grads = self._gradients(batch)
            live = [
                (grads[b], v)
                for b, v in zip(blocks, cotangents, strict=True)
                if grads[b] is not None
            ]
            if not live:
                continue  # these gradients do not depend on θ: zero curvature
            outputs = [g for g, _ in live]

            def product(*vectors: torch.Tensor, outputs: list[torch.Tensor] = outputs):
                return torch.autograd.grad(
                    outputs, params, vectors, retain_graph=True, materialize_grads=True
                )

            with sdpa_kernel(SDPBackend.MATH):
                for start in range(0, count, self.vector_batch):
                    stop = min(start + self.vector_batch, count)
                    if stop - start == 1:
                        parts = product(*(v[start] for _, v in live))
                        for total, part in zip(sums, parts, strict=True):
                            total[start] += part
                    else:
                        parts = torch.func.vmap(product)(*(v[start:stop] for _, v in live))
                        for total, part in zip(sums, parts, strict=True):
                            total[start:stop] += part
        return sums

    def matmul(self, vectors: torch.Tensor) -> torch.Tensor:
        """``H v`` for each row of ``vectors`` (V, dim) -> (V, dim)."""
        if vectors.dim() != 2:
            raise ValueError(
                f"expected vectors of shape (V, {self.space.dim}), got {vectors.shape}"
            )
        every = range(len(self.space))
        parts = self.space.split(vectors.to(self.device, self.dtype))
        sums = self._accumulate(every, parts, every)
        self.full_products += len(vectors)
        return self.space.flatten(sums)

    def block_matmul(self, block: int, vectors: torch.Tensor) -> torch.Tensor:
        """``H_bb v`` for each row of ``vectors`` (V, numel_b): the diagonal block's products."""
        numel = self.space.numels[block]
        if vectors.dim() != 2 or vectors.shape[1] != numel:
            raise ValueError(
                f"block {self.space.names[block]!r} needs vectors of shape (V, {numel}), "
                f"got {tuple(vectors.shape)}"
            )
        shaped = vectors.to(self.device, self.dtype).view(len(vectors), *self.space.shapes[block])
        (total,) = self._accumulate([block], [shaped], [block])
        self.block_products += len(vectors)
        return total.view(len(vectors), numel)
