"""Where the time of the Hessian's products goes: torch.profiler's ops by self CPU time.

For the paper's ResNet18 and ViT at ``--images`` CIFAR-shaped images it profiles a create-graph
gradient, a full product and a block product (of ``--block``, default the middle block) through
the kept graph, and the Gauss-Newton sub-Hessians of the blocks whose Hessian is their
Gauss-Newton block (``--k`` coordinates each), and prints each one's ``--top`` ops with their
share of its self CPU time.

    python benchmarks/hessian_profile.py --threads 1
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F
from hessian_cost import ARCHS, cifar_like, units
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.profiler import ProfilerActivity, profile

from infoopt.hessian.blocks import block_coordinates
from infoopt.hessian.cost import REFERENCE_SHAPE
from infoopt.hessian.hvp import HessianOperator
from infoopt.models import build_model


def top_ops(function: Callable[[], object], top: int) -> list[tuple[str, float, int]]:
    """``function``'s ``top`` ops by self CPU time: (name, share, calls), after a warm-up."""
    with sdpa_kernel(SDPBackend.MATH):
        function()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            function()
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    return [(e.key, e.self_cpu_time_total / total, e.count) for e in events[:top]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--block", type=int, default=None, help="default: the middle block")
    parser.add_argument("--k", type=int, default=64, help="coordinates per Gauss-Newton block")
    parser.add_argument("--top", type=int, default=8)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    x, y = cifar_like(args.images, device)
    print(f"{torch.get_num_threads()} thread(s), {args.images} images, torch {torch.__version__}")
    for arch in ARCHS:
        torch.manual_seed(0)
        operator = HessianOperator(build_model(arch, **REFERENCE_SHAPE), x, y)
        space = operator.space
        block = len(space) // 2 if args.block is None else args.block
        v = torch.randn(1, space.dim, generator=torch.Generator().manual_seed(1))
        unit = units(space, block, 1, device)
        exact = sorted(operator.gauss_newton.blocks)
        coords = block_coordinates(space, args.k, seed=0)

        def gradient(operator=operator):
            loss = F.cross_entropy(operator.model(operator.x), operator.y)
            return torch.autograd.grad(loss, operator.params, create_graph=True)

        runs = {
            "gradient (create-graph)": gradient,
            "full product": functools.partial(operator.matmul, v),
            f"block product, {space.names[block]}": functools.partial(
                operator.block_matmul, block, unit
            ),
            f"Gauss-Newton sub-Hessians, {len(exact)} blocks": functools.partial(
                operator.gauss_newton_submatrices, exact, [coords[b] for b in exact]
            ),
        }
        for label, function in runs.items():
            print(f"  {arch}, {label}:")
            for name, share, calls in top_ops(function, args.top):
                print(f"    {100 * share:5.1f} %  {name} ({calls} calls)")


if __name__ == "__main__":
    main()
