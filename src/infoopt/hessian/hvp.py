"""Hessian-vector products of the mean cross-entropy over a fixed evaluation set.

The loss is ``L(θ) = (1/N) Σ_i CE(f_θ(x_i), y_i)`` with the model in eval mode (BatchNorm uses
its running statistics, dropout is off), so L is a weighted sum of per-micro-batch means
``L = Σ_m (N_m / N) L_m`` and ``Hv = Σ_m (N_m / N) H_m v`` holds exactly: micro-batching only
bounds memory. Every product double-backwards through each micro-batch's gradient, built with
``create_graph=True``.

Memory: that graph holds every activation of its micro-batch, far more than the model. Under a
memory budget the operator measures the graph's bytes per image on a few images
(:class:`Footprint`), plans the micro-batch size from them (:func:`plan_micro_batches`), keeps
the graphs of as many micro-batches as fit between calls and rebuilds the others on every call.
Without a budget everything is kept, as fast as it gets; with a tiny one each image is rebuilt on
every call.

Two kinds of product, and a shortcut:

- :meth:`HessianOperator.matmul`: ``H v`` for vectors of the whole flat parameter space;
- :meth:`HessianOperator.block_matmul`: ``H_bb v_b`` for vectors of one block ``b``. Autograd then
  differentiates only ``∂L/∂θ_b`` and only with respect to ``θ_b``, so it skips every layer
  below block ``b``: far cheaper than a full product with a zero-padded vector;
- :meth:`HessianOperator.gauss_newton_submatrices`: the principal submatrices ``H[S_b, S_b]`` of
  the blocks whose Hessian is their Gauss-Newton block (:attr:`HessianOperator.gauss_newton`:
  every ResNet18 block, the ViT's head), from a forward pass, a backward pass per class and
  sums over the inputs each coordinate multiplies (:mod:`infoopt.hessian.gauss_newton`), with
  no create-graph gradient at all: a column costs a small fraction of the block product it
  replaces (``benchmarks/hessian_cost.py --parts e`` measures both).

``vector_batch`` vectors go through one double-backward together (``torch.func.vmap`` over
``torch.autograd.grad``, which has real batching rules for convolutions and BatchNorm, unlike
``is_grads_batched``'s legacy vmap); ``vector_batch=1`` loops over the vectors instead, which
``benchmarks/hessian_cost.py`` finds faster on the CPU. A rebuilt graph serves every vector of
one call, so its cost is shared by a call's vectors.

A full product runs each convolution or matrix product of the network about twice as often as
the gradient does, which is the floor of a double-backward; forward-over-reverse (``torch.func``
``jvp`` over ``grad``) recomputes the gradient and is slower, compiled or not
(``benchmarks/hessian_cost.py --parts e`` and ``benchmarks/hessian_profile.py`` measure these).
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from tqdm.auto import tqdm

from infoopt.hessian import gauss_newton
from infoopt.hessian.affine_norm import affine_batch_norms
from infoopt.hessian.options import DTYPE_NAMES
from infoopt.hessian.space import ParameterSpace

DTYPES = {name: getattr(torch, name) for name in DTYPE_NAMES}
GIB = 2**30
# Images of the footprint's probe: enough that the few tensors saved once per graph (scalars,
# BatchNorm's per-channel scales) barely count, few enough to cost well under a product.
PROBE_IMAGES = 4
# When not every micro-batch can be kept, the one being rebuilt and multiplied may take this
# share of the budget: smaller micro-batches would leave more of it to kept graphs, but each
# costs a pass of its own and a gradient-sized tensor when kept.
IN_FLIGHT_SHARE = 0.25


@dataclass(frozen=True)
class Footprint:
    """The bytes that a micro-batch's create-graph gradient keeps alive: ``per_image`` for
    each of its images (the tensors its graph saves) and ``per_batch`` (the gradient itself,
    one tensor per parameter)."""

    per_image: float
    per_batch: float

    def graph(self, size: int) -> float:
        return size * self.per_image + self.per_batch


@dataclass(frozen=True)
class MicroBatchPlan:
    """``count`` micro-batches of ``size`` images (the last may have fewer); the first ``kept``
    keep their graphs between calls, the others are rebuilt on every call."""

    size: int
    count: int
    kept: int

    def __str__(self) -> str:
        return (
            f"{self.count} micro-batches of {self.size} images, {self.kept} kept, "
            f"{self.count - self.kept} rebuilt for every product"
        )


def plan_micro_batches(
    num_samples: int,
    footprint: Footprint | None,
    budget_bytes: float | None,
    *,
    vector_batch: int = 1,
    size: int | None = None,
) -> MicroBatchPlan:
    """The fewest micro-batches whose graphs all fit ``budget_bytes``; else micro-batches
    sized by :data:`IN_FLIGHT_SHARE`, as many kept as fit. ``size`` overrides the size.

    During a call the operator holds its kept graphs, the graph being rebuilt (if any) and the
    temporaries of one double-backward through one micro-batch. Those make a gradient for each
    saved tensor and free them as they go; we count them as ``vector_batch`` times the
    micro-batch's graph. The allocator adds its own overhead on top of the budget
    (``benchmarks/hessian_memory.py`` measures it; :data:`infoopt.hessian.cost.ALLOCATOR`).
    Without a budget every micro-batch is kept, by default as one.
    """
    if budget_bytes is None:
        size = num_samples if size is None else min(size, num_samples)
        count = math.ceil(num_samples / size)
        return MicroBatchPlan(size, count, count)
    if footprint is None:
        raise ValueError("a memory budget needs the graph's footprint")

    def fits_kept(size: int) -> bool:
        graph = footprint.graph(size)
        return math.ceil(num_samples / size) * graph + vector_batch * graph <= budget_bytes

    if size is None:
        sizes = (math.ceil(num_samples / count) for count in range(1, num_samples + 1))
        size = next((s for s in sizes if fits_kept(s)), None)
    if size is None:
        room = IN_FLIGHT_SHARE * budget_bytes / (1 + vector_batch) - footprint.per_batch
        largest = int(room // footprint.per_image) if footprint.per_image > 0 else num_samples
        # As many micro-batches as that size needs, as equal as they can be.
        size = math.ceil(num_samples / math.ceil(num_samples / max(largest, 1)))
    size = min(size, num_samples)
    count = math.ceil(num_samples / size)
    if fits_kept(size):
        return MicroBatchPlan(size, count, count)
    graph = footprint.graph(size)
    # What stays after the double-backward's temporaries and the graph being rebuilt.
    kept = math.floor((budget_bytes - vector_batch * graph) / graph) - 1
    return MicroBatchPlan(size, count, min(max(kept, 0), count))


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
    put in eval mode; the caller's model is left untouched. ``memory_budget_gb`` (GiB, None:
    unbounded) bounds the graphs it holds: ``plan`` says how it micro-batches the data and
    how many micro-batches keep their graphs; ``footprint`` is measured (injectable, for
    tests); ``micro_batch_size`` overrides the planned size. ``full_products`` and
    ``block_products`` count the vectors multiplied so far.
    """

    def __init__(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        micro_batch_size: int | None = None,
        memory_budget_gb: float | None = None,
        footprint: Footprint | None = None,
        vector_batch: int = 1,
        dtype: str | torch.dtype = torch.float32,
        device: str | torch.device | None = None,
    ) -> None:
        if len(x) != len(y) or len(y) == 0:
            raise ValueError(f"need as many labels as inputs (> 0), got {len(x)} and {len(y)}")
        if micro_batch_size is not None and micro_batch_size < 1:
            raise ValueError(f"micro_batch_size must be positive, got {micro_batch_size}")
        if memory_budget_gb is not None and not memory_budget_gb >= 0:
            raise ValueError(f"memory_budget_gb must be >= 0, got {memory_budget_gb}")
        if vector_batch < 1:
            raise ValueError(f"vector_batch must be positive, got {vector_batch}")
        self.dtype = resolve_dtype(dtype)
        self.device = torch.device(device) if device is not None else x.device
        self.model = copy.deepcopy(model).to(device=self.device, dtype=self.dtype).eval()
        affine_batch_norms(self.model)
        self.space = ParameterSpace.of(self.model)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.x = x.to(self.device, self.dtype) if x.is_floating_point() else x.to(self.device)
        self.y = y.to(self.device)
        self.vector_batch = vector_batch
        budget = None if memory_budget_gb is None else memory_budget_gb * GIB
        if budget is not None and footprint is None:
            footprint = self._measure_footprint()
        self.footprint = footprint
        self.budget_bytes = budget
        self.plan = plan_micro_batches(
            len(y), footprint, budget, vector_batch=vector_batch, size=micro_batch_size
        )
        size = self.plan.size
        self.micro_batches = [slice(start, start + size) for start in range(0, len(y), size)]
        self._kept: dict[int, list[torch.Tensor | None]] = {}
        self.full_products = 0
        self.block_products = 0

    @property
    def num_samples(self) -> int:
        return len(self.y)

    def _batch_loss(self, batch: slice) -> torch.Tensor:
        """This micro-batch's share of the mean loss: (N_m / N) · mean CE on it."""
        weight = len(self.y[batch]) / self.num_samples
        return F.cross_entropy(self.model(self.x[batch]), self.y[batch]) * weight

    def _build(self, batch: slice) -> list[torch.Tensor | None]:
        """``∂L_m/∂θ`` with its graph; None for a block whose gradient is constant in θ."""
        with sdpa_kernel(SDPBackend.MATH):
            grads = torch.autograd.grad(
                self._batch_loss(batch), self.params, create_graph=True, allow_unused=True
            )
        return [g if g is not None and g.requires_grad else None for g in grads]

    def _gradients(self, index: int) -> list[torch.Tensor | None]:
        """Micro-batch ``index``'s gradient: kept from an earlier call, or built (and kept if
        the plan keeps it)."""
        if index not in self._kept:
            grads = self._build(self.micro_batches[index])
            if index >= self.plan.kept:
                return grads
            self._kept[index] = grads
        return self._kept[index]

    def _measure_footprint(self) -> Footprint:
        """The graph's bytes per image: what the tensors saved by a create-graph gradient of the
        first :data:`PROBE_IMAGES` images occupy (their storages, each once, less those of the
        parameters, buffers and data, which live anyway), divided by their number.

        Saved tensors are what a kept graph holds, on any device, counted exactly, whatever the
        allocator did before; differences of ``torch.cuda.memory_allocated`` exist on CUDA only,
        and RSS differences on CPU follow the allocator's reuse of freed memory. The allocator's
        own overhead (CPU heap fragmentation, CUDA's cache) comes on top of the budget:
        ``benchmarks/hessian_memory.py`` measures the peak RSS it leads to.
        """
        alive = {
            tensor.untyped_storage().data_ptr()
            for tensor in (*self.model.parameters(), *self.model.buffers(), self.x, self.y)
        }
        saved: dict[int, int] = {}

        def pack(tensor: torch.Tensor) -> torch.Tensor:
            storage = tensor.untyped_storage()
            if storage.data_ptr() not in alive:
                saved[storage.data_ptr()] = storage.nbytes()
            return tensor

        size = min(PROBE_IMAGES, self.num_samples)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            self._build(slice(0, size))
        gradients = sum(p.numel() * p.element_size() for p in self.params)
        return Footprint(per_image=sum(saved.values()) / size, per_batch=gradients)

    def _add_products(
        self,
        index: int,
        blocks: Sequence[int],
        cotangents: Sequence[torch.Tensor],
        params: Sequence[torch.Tensor],
        sums: list[torch.Tensor],
    ) -> None:
        """Add micro-batch ``index``'s ``∂/∂θ_inputs Σ_b <∂L_m/∂θ_b, v_b>`` to ``sums``; a
        graph built here and not kept is freed on return, before the next one is built."""
        grads = self._gradients(index)
        live = [
            (grads[b], v) for b, v in zip(blocks, cotangents, strict=True) if grads[b] is not None
        ]
        if not live:
            return  # these gradients do not depend on θ: zero curvature
        outputs = [g for g, _ in live]

        def product(*vectors: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return torch.autograd.grad(
                outputs, params, vectors, retain_graph=True, materialize_grads=True
            )

        count = len(cotangents[0])
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

    def _accumulate(
        self, blocks: Sequence[int], cotangents: Sequence[torch.Tensor], inputs: Sequence[int]
    ) -> list[torch.Tensor]:
        """``Σ_m ∂/∂θ_inputs Σ_b <∂L_m/∂θ_b, v_b>`` over ``blocks`` for a batch of cotangents
        ``v_b`` (V, *shape_b) each: one (V, *shape) tensor per input block, summed over the
        micro-batches in order, kept or rebuilt alike."""
        count = len(cotangents[0])
        params = [self.params[i] for i in inputs]
        sums = [torch.zeros(count, *p.shape, device=self.device, dtype=self.dtype) for p in params]
        for index in range(len(self.micro_batches)):
            self._add_products(index, blocks, cotangents, params, sums)
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

    @functools.cached_property
    def gauss_newton(self) -> gauss_newton.GaussNewtonBlocks:
        """The blocks whose Hessian is their Gauss-Newton block (:mod:`infoopt.hessian.
        gauss_newton`), read off the graph of the first :data:`PROBE_IMAGES` images' logits."""
        with sdpa_kernel(SDPBackend.MATH):
            return gauss_newton.exact_blocks(self.model, self.params, self.x[:PROBE_IMAGES])

    @functools.cached_property
    def _gauss_newton_size(self) -> int:
        """Images per pass of :meth:`gauss_newton_submatrices`: the plan's micro-batches, fewer
        where a memory budget leaves less room (beside the unit vectors of the largest block;
        the pass frees the kept graphs first) than the pass's forward graph, class gradients and
        tangents need. Planned for all the Gauss-Newton blocks together, so a block's sums run
        over the same micro-batches whichever blocks a call computes and whatever was computed
        before (``benchmarks/hessian_memory.py`` measures the peak)."""
        if self.budget_bytes is None:
            return self.plan.size
        blocks = sorted(self.gauss_newton.blocks)
        if not blocks:
            return self.plan.size
        holders = [gauss_newton.owners(self.model, self.params)[b] for b in blocks]
        outputs = [self.gauss_newton.outputs[b] for b in blocks]
        element = torch.finfo(self.dtype).bits // 8
        elements = gauss_newton.bytes_per_image(self.gauss_newton.classes, holders, outputs)
        per_image = self.footprint.per_image + element * elements
        units = element * gauss_newton.TANGENTS * max(self.space.numels[b] for b in blocks)
        room = self.budget_bytes - units
        return min(self.plan.size, gauss_newton.micro_batch(room, per_image, self.num_samples))

    def gauss_newton_submatrices(
        self, blocks: Sequence[int], coords: Sequence[torch.Tensor], *, progress: bool = False
    ) -> list[torch.Tensor]:
        """``H[S, S]`` of each of ``blocks`` (all in :attr:`gauss_newton`), with ``S`` its
        ``coords`` (sorted indices into the block): exact like :meth:`block_matmul`'s columns,
        from one forward, a backward per class and one-module tangents per micro-batch instead
        of a double-backward per coordinate. Counted in ``block_products``, a column each."""
        blocks = list(blocks)
        if not blocks:
            return []
        others = sorted(set(blocks) - self.gauss_newton.blocks)
        if others:
            names = ", ".join(self.space.names[b] for b in others)
            raise ValueError(f"the Hessians of blocks {names} are not their Gauss-Newton blocks")
        holders = [gauss_newton.owners(self.model, self.params)[b] for b in blocks]
        index = [c.to(self.device) for c in coords]
        sums = [torch.zeros(len(c), len(c), device=self.device, dtype=self.dtype) for c in index]
        size = self._gauss_newton_size
        self._kept.clear()  # the pass needs no graph: the budget is its own
        starts = range(0, self.num_samples, size)
        with sdpa_kernel(SDPBackend.MATH):
            for start in tqdm(starts, desc="Gauss-Newton blocks", disable=not progress):
                x = self.x[start : start + size]
                gauss_newton.add_submatrices(
                    self.model, holders, x, index, sums, 1 / self.num_samples
                )
        self.block_products += sum(len(c) for c in index)
        return sums

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
