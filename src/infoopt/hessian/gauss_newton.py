"""Principal sub-Hessians of the blocks whose Hessian is their Gauss-Newton block, without
Hessian-vector products.

With ``f`` the logits and ``J_b = ∂f/∂θ_b``, block ``b``'s diagonal Hessian block is
``H_bb = J_bᵀ H_CE J_b + Σ_c (∂L/∂f_c) ∂²f_c/∂θ_b²`` (``H_CE``: the cross-entropy's Hessian in the
logits). When the logits are piecewise linear in ``θ_b`` alone (every op from ``θ_b`` to the logits
is linear, piecewise linear like ReLU and max-pooling, or a product with ``θ_b`` in one factor
only), the second term is zero almost everywhere, and autograd's double-backward computes zero for
it too: ``H_bb`` is its Gauss-Newton block, exactly. That holds for every block of a ReLU network
of convolutions, eval-mode BatchNorm and pooling (our ResNet18), and for a network's last layers
(the ViT's head). :func:`exact_blocks` reads it off the autograd graph of one forward pass.

Such a block's ``K x K`` submatrix needs no second-order pass. With ``H_CE = A Aᵀ`` per image
(``A = diag(√p) − p √pᵀ``, ``p`` the softmax), ``H[S, S] = Σ_n M_nᵀ M_n / N`` for
``M_n = A_nᵀ J_n[:, S]``. Through the output ``z`` of the module that holds ``θ_b``,
``J_n[:, S] = (∂f_n/∂z_n)(∂z_n/∂θ_S)``, so row ``c`` of ``M_n`` is ``⟨δ_c, t_s⟩``: ``δ_c`` the
gradient at ``z`` of the logits against column ``c`` of ``A`` (one backward pass per class, shared
by every block), ``t_s`` the tangent of ``z`` along coordinate ``s`` (a forward-mode product through
that one module). One forward, C backward passes and ``K`` one-module tangents per block replace
``K`` block products, each a double-backward through everything above the block. For linear
layers, convolutions and BatchNorms the tangent of coordinate ``s`` is one output channel's
copy of an input feature (for a convolution's weight, a shifted input channel), so
``⟨δ_c, t_s⟩`` is read off the input and ``δ_c``'s channel, with no pass through the module.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, jvp, vmap

from infoopt.hessian.affine_norm import AffineBatchNorm

# Autograd nodes of ops whose second derivative is zero (almost everywhere) in all their inputs
# together: linear maps (sums, means, views, copies) and piecewise linear ones (ReLU, max-pooling).
LINEAR_NODES = frozenset(
    {
        "AccumulateGrad",
        "AdaptiveAvgPool2DBackward0",
        "AddBackward0",
        "AddBackward1",
        "AvgPool2DBackward0",
        "CatBackward0",
        "CloneBackward0",
        "ExpandBackward0",
        "MaxPool2DWithIndicesBackward0",
        "MeanBackward0",
        "MeanBackward1",
        "MulBackward1",
        "NegBackward0",
        "PermuteBackward0",
        "ReluBackward0",
        "SelectBackward0",
        "SliceBackward0",
        "SqueezeBackward1",
        "SubBackward0",
        "SubBackward1",
        "SumBackward0",
        "SumBackward1",
        "TBackward0",
        "TransposeBackward0",
        "UnsafeViewBackward0",
        "UnsqueezeBackward0",
        "ViewBackward0",
    }
)
# Products: linear in each of the two inputs at these positions (the others enter additively), so
# a block's second derivative there is zero unless both factors depend on it.
PRODUCT_NODES = {
    "AddmmBackward0": (1, 2),
    "BmmBackward0": (0, 1),
    "ConvolutionBackward0": (0, 1),
    "MmBackward0": (0, 1),
    "MulBackward0": (0, 1),
}


# Coordinates whose tangents one forward-mode pass through a module computes together.
TANGENTS = 16


def owners(model: nn.Module, params: Sequence[torch.Tensor]) -> list[tuple[nn.Module, str]]:
    """The module that holds each of ``params`` itself, and the parameter's name in it."""
    found: dict[int, tuple[nn.Module, str]] = {}
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            found.setdefault(id(param), (module, name))
    return [found[id(p)] for p in params]


@contextmanager
def captured(modules: Sequence[nn.Module]) -> Iterator[dict[nn.Module, list[tuple]]]:
    """Every call of ``modules`` while in the context: ``(args, kwargs, output)`` each.

    The network goes on with a copy of each output, and the inputs are kept as copies: an
    in-place op after the module (timm's ``ReLU(inplace=True)``, ``x += shortcut``) would
    otherwise change the recorded tensors, and the gradients taken at them."""
    calls: dict[nn.Module, list[tuple]] = {module: [] for module in modules}

    def record(module, args, kwargs, output):
        args = tuple(_detached(a).clone() if isinstance(a, torch.Tensor) else a for a in args)
        calls[module].append((args, kwargs, output))
        return output.clone() if isinstance(output, torch.Tensor) else None

    handles = [module.register_forward_hook(record, with_kwargs=True) for module in calls]
    try:
        yield calls
    finally:
        for handle in handles:
            handle.remove()


def _postorder(root: torch.autograd.graph.Node) -> list[torch.autograd.graph.Node]:
    """The nodes of the graph below ``root``, each after every node it leads to."""
    order, expanded, stack = [], set(), [(root, False)]
    while stack:
        node, done = stack.pop()
        if done:
            order.append(node)
        elif node not in expanded:
            expanded.add(node)
            stack.append((node, True))
            stack.extend((child, False) for child, _ in node.next_functions if child is not None)
    return order


def _reaches(root: torch.autograd.graph.Node, target, blocked) -> bool:
    """Whether a path from ``root`` leads to ``target`` without passing through ``blocked``."""
    seen, stack = {root, blocked}, [root] if root is not blocked else []
    while stack:
        node = stack.pop()
        if node is target:
            return True
        for child, _ in node.next_functions:
            if child is not None and child not in seen:
                seen.add(child)
                stack.append(child)
    return False


@dataclass(frozen=True)
class GaussNewtonBlocks:
    """The blocks whose Hessian is their Gauss-Newton block (indices into the parameters), the
    number of classes, and per block the numel per image of the output of the module holding it
    (0 for the other blocks)."""

    blocks: frozenset[int]
    classes: int
    outputs: tuple[int, ...]


def exact_blocks(
    model: nn.Module, params: Sequence[torch.Tensor], x: torch.Tensor
) -> GaussNewtonBlocks:
    """Which blocks' Hessians equal their Gauss-Newton blocks, read off the autograd graph of the
    logits ``model(x)`` (``(images, classes)``, ``x``: two images or more): block ``b``
    qualifies when every node above it is in :data:`LINEAR_NODES`, or in :data:`PRODUCT_NODES`
    with ``θ_b`` in at most one factor, and every path from the logits to ``θ_b`` passes through
    the output of the module holding it, called once, whose first dimension is the images' and
    whose slice of one image is all that image's logits depend on. Unknown ops count as
    nonlinear: a block in doubt keeps its Hessian-vector products."""
    holders = owners(model, params)
    modules = list({id(m): m for m, _ in holders}.values())
    with captured(modules) as calls:
        logits = model(x)
    exact, outputs = set(), [0] * len(params)
    if logits.dim() != 2 or logits.grad_fn is None:
        return GaussNewtonBlocks(frozenset(), 0, tuple(outputs))
    block_of = {id(p): b for b, p in enumerate(params)}
    leaves: dict[int, torch.autograd.graph.Node] = {}
    depends: dict[torch.autograd.graph.Node, frozenset[int]] = {}
    nonlinear: set[int] = set()
    for node in _postorder(logits.grad_fn):
        inputs = [
            frozenset() if child is None else depends[child] for child, _ in node.next_functions
        ]
        depends[node] = frozenset().union(*inputs)
        name = type(node).__name__
        if name == "AccumulateGrad" and id(node.variable) in block_of:
            leaves[block_of[id(node.variable)]] = node
            depends[node] = frozenset({block_of[id(node.variable)]})
        elif name in PRODUCT_NODES:
            first, second = PRODUCT_NODES[name]
            nonlinear |= inputs[first] & inputs[second]
        elif name not in LINEAR_NODES:
            nonlinear |= depends[node]
    candidates = {
        module: calls[module][0][2]
        for module in modules
        if len(calls[module]) == 1
        and isinstance(calls[module][0][2], torch.Tensor)
        and calls[module][0][2].grad_fn is not None
        and calls[module][0][2].shape[0] == len(x)
    }
    # The first image's logits must not depend on the other images' slices of any output.
    if candidates:
        first = torch.autograd.grad(logits[0].sum(), list(candidates.values()), allow_unused=True)
        for module, grad in zip(list(candidates), first, strict=True):
            if grad is not None and grad[1:].any():
                del candidates[module]
    for b, (module, _) in enumerate(holders):
        if b in nonlinear or b not in leaves or module not in candidates:
            continue
        output = candidates[module]
        if not _reaches(logits.grad_fn, leaves[b], output.grad_fn):
            exact.add(b)
            outputs[b] = output[0].numel()
    return GaussNewtonBlocks(frozenset(exact), logits.shape[1], tuple(outputs))


def _detached(value):
    return value.detach() if isinstance(value, torch.Tensor) else value


def _stock(module: nn.Module, kind: type[nn.Module]) -> bool:
    """Whether ``module`` is a ``kind`` that computes what torch's ``kind`` does."""
    return isinstance(module, kind) and type(module).forward is kind.forward


def _channel_features(
    module: nn.Module, name: str, x: torch.Tensor, index: torch.Tensor
) -> tuple[int, torch.Tensor, torch.Tensor | None] | None:
    """For the common modules whose output is affine in parameter ``name`` and whose
    coordinate ``s`` moves one output channel ``o_s`` only, by a feature ``f_s`` of the input
    ``x`` at every position: (the output's channel dimension, ``o_s`` for the coordinates
    ``index``, ``f_s`` as (images, coordinates, positions), None where it is 1: a bias).
    None for any other module, also for a subclass with its own ``forward`` (timm's
    ``Conv2dSame`` pads its input inside it): the tangents see what it computes."""
    linear, conv = _stock(module, nn.Linear), _stock(module, nn.Conv2d)
    if name == "bias" and (linear or conv or isinstance(module, AffineBatchNorm)):
        return (-1 if linear else 1), index, None
    if name != "weight":
        return None
    if linear:
        # weight[o, i]: output feature o gets input feature i, at every token.
        inputs = x.reshape(len(x), -1, module.in_features)
        return -1, index // module.in_features, inputs[:, :, index % module.in_features].mT
    if isinstance(module, AffineBatchNorm):
        # weight[o]: channel o gets (x_o − mean_o) / sqrt(var_o + eps).
        mean, var = module.running_mean[index], module.running_var[index]
        shape = (1, -1) + (1,) * (x.dim() - 2)
        scaled = (x[:, index] - mean.view(shape)) * torch.rsqrt(var + module.eps).view(shape)
        return 1, index, scaled.reshape(len(x), len(index), -1)
    if (
        conv
        and module.groups == 1
        and module.padding_mode == "zeros"
        and not isinstance(module.padding, str)
    ):
        # weight[o, i, a, b]: output channel o at (h, w) gets the padded input channel i at
        # (a·dilation + h·stride, b·dilation + w·stride).
        _, inputs, kh, kw = module.weight.shape
        (ph, pw), (sh, sw), (dh, dw) = module.padding, module.stride, module.dilation
        padded = F.pad(x, (pw, pw, ph, ph))
        rows = (padded.shape[2] - dh * (kh - 1) - 1) // sh + 1
        cols = (padded.shape[3] - dw * (kw - 1) - 1) // sw + 1
        within = index % (inputs * kh * kw)
        channel, a, b = within // (kh * kw), within // kw % kh, within % kw
        h = a[:, None] * dh + sh * torch.arange(rows, device=x.device)
        w = b[:, None] * dw + sw * torch.arange(cols, device=x.device)
        patches = padded[:, channel[:, None, None], h[:, :, None], w[:, None, :]]
        return 1, index // (inputs * kh * kw), patches.flatten(2)
    return None


def _direct_rows(
    module: nn.Module,
    name: str,
    x: torch.Tensor,
    index: torch.Tensor,
    shape: torch.Size,
    deltas: torch.Tensor,
) -> torch.Tensor | None:
    """``⟨δ_c, t_s⟩`` as (images, coordinates, classes) from :func:`_channel_features`, for a
    module's output of per-image ``shape`` and its class gradients ``deltas`` (images, numel,
    classes): no tangent is formed, only the channel's positions are summed. None where
    :func:`_channel_features` does not know the module."""
    found = _channel_features(module, name, x, index)
    if found is None:
        return None
    dim, channels, features = found
    grads = deltas.view(len(x), *shape, -1).movedim(dim if dim > 0 else len(shape), 1)
    rows = []
    for chunk in torch.arange(len(index), device=index.device).split(TANGENTS):
        # (images, chunk, positions, classes)
        picked = grads[:, channels[chunk]].reshape(len(x), len(chunk), -1, deltas.shape[-1])
        if features is None:
            rows.append(picked.sum(2))
        else:
            rows.append(torch.einsum("nkp,nkpc->nkc", features[:, chunk], picked))
    return torch.cat(rows, dim=1)


def _tangent_rows(
    module: nn.Module,
    name: str,
    args: tuple,
    kwargs: dict,
    index: torch.Tensor,
    deltas: torch.Tensor,
) -> torch.Tensor:
    """``⟨δ_c, t_s⟩`` as (images, coordinates, classes) for any module: the tangents ``t_s``
    from forward-mode products through it, :data:`TANGENTS` coordinates at once."""
    value = getattr(module, name).detach()

    def output(weights: torch.Tensor) -> torch.Tensor:
        return functional_call(module, {name: weights}, args, kwargs)

    def tangent(unit: torch.Tensor) -> torch.Tensor:
        return jvp(output, (value,), (unit.view_as(value),))[1]

    rows = []
    for chunk in index.split(TANGENTS):
        units = torch.zeros(len(chunk), value.numel(), dtype=value.dtype, device=value.device)
        units[torch.arange(len(chunk)), chunk] = 1.0
        with torch.no_grad():
            tangents = vmap(tangent, out_dims=1)(units).flatten(2)  # (images, chunk, numel)
        rows.append(torch.bmm(tangents, deltas))  # (images, chunk, classes)
    return torch.cat(rows, dim=1)


def add_submatrices(
    model: nn.Module,
    holders: Sequence[tuple[nn.Module, str]],
    x: torch.Tensor,
    coords: Sequence[torch.Tensor],
    sums: Sequence[torch.Tensor],
    weight: float,
) -> None:
    """Add ``weight · Σ_n M_nᵀ M_n`` over the images ``x`` to ``sums``: one ``k x k`` tensor per
    block, each held by ``holders``' (module, name) and in :func:`exact_blocks`, with ``coords``
    its coordinates ``S``. Row ``c`` of ``M_n`` is ``⟨δ_c, t_s⟩``: for linear layers,
    convolutions and BatchNorms read off their inputs (:func:`_direct_rows`), for any other
    module from forward-mode tangents (:func:`_tangent_rows`)."""
    modules = list({id(m): m for m, _ in holders}.values())
    with captured(modules) as calls:
        logits = model(x)
    inputs = {id(module): calls[module][0][:2] for module in modules}
    outputs = [calls.pop(module)[0][2] for module in modules]
    shapes = {id(module): out.shape[1:] for module, out in zip(modules, outputs, strict=True)}
    probabilities = logits.detach().softmax(dim=1)
    roots = probabilities.sqrt()
    # Column c of A = diag(√p) − p √pᵀ, per image: A Aᵀ = diag(p) − p pᵀ, the CE's Hessian.
    factor = torch.diag_embed(roots) - probabilities[:, :, None] * roots[:, None, :]
    classes = logits.shape[1]
    # Per module, (images, numel of an image's output, classes): the gradients at its output.
    deltas = {
        id(module): out.new_empty(len(x), out[0].numel(), classes)
        for module, out in zip(modules, outputs, strict=True)
    }
    for c in range(classes):
        grads = torch.autograd.grad(logits, outputs, factor[:, :, c], retain_graph=c < classes - 1)
        for module, grad in zip(modules, grads, strict=True):
            deltas[id(module)][:, :, c] = grad.flatten(1)
    del logits, outputs, grads
    for (module, name), index, total in zip(holders, coords, sums, strict=True):
        args, kwargs = inputs[id(module)]
        args = tuple(_detached(a) for a in args)
        kwargs = {key: _detached(value) for key, value in kwargs.items()}
        delta = deltas[id(module)]
        rows = None
        if len(args) == 1 and not kwargs:
            rows = _direct_rows(module, name, args[0], index, shapes[id(module)], delta)
        if rows is None:
            rows = _tangent_rows(module, name, args, kwargs, index, delta)
        rows = rows.transpose(1, 2).reshape(-1, len(index))
        total += weight * (rows.T @ rows)


def bytes_per_image(
    classes: int, holders: Sequence[tuple[nn.Module, str]], outputs: Sequence[int]
) -> int:
    """The elements :func:`add_submatrices` holds per image beyond the forward pass's graph, for
    blocks held by ``holders`` whose modules' outputs have ``outputs`` elements per image: the
    gradients at each output for every class, the copies :func:`captured` makes of each output
    and input (an input taken as its output's size), and one pass's :data:`TANGENTS` tangents,
    three times (the forward-mode product's terms, their sum, its contiguous copy)."""
    sizes = {id(module): size for (module, _), size in zip(holders, outputs, strict=True)}
    return (classes + 2) * sum(sizes.values()) + 3 * TANGENTS * max(sizes.values(), default=0)


def micro_batch(room: float, per_image: float, images: int) -> int:
    """The images that fit ``room`` bytes (may be infinite) at ``per_image`` each: at least 1,
    at most ``images``."""
    fits = room / per_image if per_image > 0 else images
    return int(min(max(fits, 1), images))
