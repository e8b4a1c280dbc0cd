"""Cost of our Hessian computations against baselines, side by side on the same model and data.

(a) one gradient vs one Hessian-vector product (ours: double-backward through the kept
    create_graph gradient; also one that rebuilds the graph, as a run pays for the micro-batches
    its memory budget cannot keep);
    goal: HVP <= 1.6x a gradient on CPU for a small CNN.
(b) every block's K x K sub-Hessian: ours (block-restricted products through one kept graph,
    looped or vmapped) vs K separate full-model HVPs with zero-padded unit vectors per block;
    goal: >= 3x faster.
(c) the top eigenvalue: our Lanczos vs PyHessian's power iteration (value, error against a
    float64 reference, HVPs, time), PyHessian at its default tolerance and at one that matches
    our accuracy; goal: same value within 0.5 %, fewer HVPs, less time.
(d) predicted cost per checkpoint of the paper's configuration (ResNet18 and ViT, K = 64,
    2048 CIFAR-sized test images): one block product per block and one full HVP are measured at
    ``--measure-size`` images and scaled linearly to ``--eval-size``.

Times are the minimum over ``--repeats`` rounds (the machine may be shared), except the slow
baseline of (b), timed once.

    python benchmarks/hessian_cost.py                  # CPU
    python benchmarks/hessian_cost.py --device cuda    # a GPU; (d) at the full eval size
"""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from infoopt.hessian.blocks import block_coordinates, sub_hessians
from infoopt.hessian.hvp import HessianOperator
from infoopt.hessian.options import HessianOptions
from infoopt.hessian.spectrum import lanczos_top_eigenvalue
from infoopt.models import build_model

SMALL_VIT = {"dim": 32, "depth": 2, "heads": 2, "head_dim": 16, "mlp_dim": 64}


class SmallCNN(nn.Module):
    """Three conv + BatchNorm + ReLU + pool stages and a linear head (19,626 parameters)."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for inputs, outputs in ((3, 16), (16, 32), (32, 32)):
            layers += [nn.Conv2d(inputs, outputs, 3, padding=1), nn.BatchNorm2d(outputs)]
            layers += [nn.ReLU(), nn.MaxPool2d(2)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(32 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


def best_time(
    function: Callable[[], object], device: torch.device, repeats: int, warm_up: bool = True
) -> float:
    """Minimum wall time of ``function`` over ``repeats`` calls (after a warm-up call)."""
    if warm_up:
        function()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        function()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return min(times)


def interleaved_times(
    functions: list[Callable[[], object]], device: torch.device, repeats: int
) -> list[float]:
    """Minimum wall time of each function over ``repeats`` rounds that call each in turn,
    so that load from other processes slows all of them alike."""
    times = [[] for _ in functions]
    for function in functions:
        function()
    for _ in range(repeats):
        for function, spent in zip(functions, times, strict=True):
            spent.append(best_time(function, device, 1, warm_up=False))
    return [min(spent) for spent in times]


def cifar_like(n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, 32, 32, generator=g)
    return x.to(device), torch.randint(0, 10, (n,), generator=g).to(device)


def trained_cnn(x: torch.Tensor, y: torch.Tensor, device: torch.device) -> nn.Module:
    """A few SGD steps, so that the Hessian is not that of the initialisation."""
    torch.manual_seed(0)
    model = SmallCNN().to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for _ in range(20):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    return model.eval()


def part_a(model, x, y, device, repeats) -> None:
    params = list(model.parameters())

    def gradient():
        return torch.autograd.grad(F.cross_entropy(model(x), y), params)

    kept = HessianOperator(model, x, y, device=device)
    rebuilt = HessianOperator(
        model, x, y, device=device, micro_batch_size=len(y) // 2, memory_budget_gb=0.0
    )
    v = torch.randn(1, kept.space.dim, generator=torch.Generator().manual_seed(1)).to(device)
    t_grad, t_kept, t_rebuilt = interleaved_times(
        [gradient, lambda: kept.matmul(v), lambda: rebuilt.matmul(v)], device, 5 * repeats
    )
    print(f"(a) {len(y)} images, {kept.space.dim} parameters")
    print(f"    gradient                           {1e3 * t_grad:9.2f} ms   1.00x")
    print(f"    HVP, kept graph (ours)             {1e3 * t_kept:9.2f} ms   {t_kept / t_grad:.2f}x")
    print(
        f"    HVP, graph rebuilt each call       {1e3 * t_rebuilt:9.2f} ms   "
        f"{t_rebuilt / t_grad:.2f}x  (2 micro-batches)"
    )


def part_b(model, x, y, device, repeats, max_k) -> None:
    operator = HessianOperator(model, x, y, device=device)
    space = operator.space
    coords = block_coordinates(space, max_k, seed=0)
    total = sum(len(c) for c in coords)

    def separate() -> list[np.ndarray]:
        matrices = []
        for b, index in enumerate(coords):
            flat = (index + space.offsets[b]).to(device)
            columns = []
            for i in flat:
                unit = torch.zeros(1, space.dim, device=device)
                unit[0, i] = 1.0
                columns.append(operator.matmul(unit)[0, flat])
            matrices.append(torch.stack(columns, dim=1).double().cpu().numpy())
        return matrices

    ours = {}
    for vector_batch in (1, 16):
        batched = HessianOperator(model, x, y, device=device, vector_batch=vector_batch)
        ours[vector_batch] = (
            best_time(lambda batched=batched: sub_hessians(batched, coords), device, repeats),
            sub_hessians(batched, coords),
        )
    operator.matmul(torch.zeros(1, space.dim, device=device))  # builds the kept graph
    started = time.perf_counter()
    reference = separate()
    t_separate = time.perf_counter() - started
    print(f"(b) K = {max_k}: {len(space)} blocks, {total} unit vectors")
    print(f"    {total} separate full HVPs            {t_separate:9.3f} s    1.00x")
    for vector_batch, (seconds, matrices) in ours.items():
        scale = max(np.abs(r).max() for r in reference)
        error = (
            max(np.abs(a - 0.5 * (r + r.T)).max() for a, r in zip(matrices, reference, strict=True))
            / scale
        )
        how = "looped" if vector_batch == 1 else f"vmapped by {vector_batch}"
        print(
            f"    ours, block products, {how:14s} {seconds:9.3f} s    "
            f"{t_separate / seconds:.2f}x faster  (max |difference| / max |H_ij| {error:.1e})"
        )


def part_c(models: dict[str, nn.Module], x, y, device, repeats) -> None:
    import importlib
    import warnings

    import pyhessian

    # The package exports the class `hessian`, which hides its module of the same name.
    module = importlib.import_module("pyhessian.hessian")
    # PyHessian calls backward(create_graph=True), which warns about a reference cycle.
    warnings.filterwarnings("ignore", "Using backward\\(\\) with create_graph=True", UserWarning)
    products = {"count": 0}
    original = module.hessian_vector_product

    def counted(*args):
        products["count"] += 1
        return original(*args)

    module.hessian_vector_product = counted
    tol = HessianOptions().lanczos_tol
    print("(c) top eigenvalue: PyHessian (power iteration; its default tol 1e-3, and 1e-6)")
    print(f"    vs ours (Lanczos; default tol {tol:g} on the relative residual)")
    for name, model in models.items():

        def theirs(model=model, tol=1e-3):
            products["count"] = 0
            torch.manual_seed(0)
            with sdpa_kernel(SDPBackend.MATH):
                computer = pyhessian.hessian(
                    copy.deepcopy(model),
                    nn.CrossEntropyLoss(),
                    data=(x, y),
                    cuda=device.type == "cuda",
                )
                return computer.eigenvalues(maxIter=1000, tol=tol, top_n=1)[0][0]

        def ours(model=model, dtype="float32", tol=tol):
            operator = HessianOperator(model, x, y, device=device, dtype=dtype)
            return lanczos_top_eigenvalue(
                lambda v: operator.matmul(v[None])[0],
                operator.space.dim,
                seed=0,
                tol=tol,
                device=device,
                dtype=operator.dtype,
            )

        rows = []
        for their_tol in (1e-3, 1e-6):
            seconds = best_time(lambda t=their_tol: theirs(tol=t), device, repeats)
            value = theirs(tol=their_tol)
            rows.append((f"PyHessian, tol {their_tol:g}", value, products["count"], seconds))
        t_ours, result = best_time(ours, device, repeats), ours()
        rows.append((f"ours, tol {tol:g}", result.eigenvalue, result.products, t_ours))
        exact = ours(dtype="float64", tol=1e-10).eigenvalue
        print(f"    {name}: exact (float64 Lanczos to 1e-10) {exact:.6f}")
        for label, value, count, seconds in rows:
            print(
                f"      {label:20s} {value:12.6f} (error {100 * abs(value / exact - 1):.4f} %) "
                f"{count:4d} HVPs {seconds:7.3f} s"
            )
        print(
            "      ours vs PyHessian (tol 1e-3, 1e-6): values differ by "
            + ", ".join(f"{100 * abs(result.eigenvalue / r[1] - 1):.3f} %" for r in rows[:2])
            + "; HVPs "
            + ", ".join(f"{result.products}/{r[2]}" for r in rows[:2])
            + "; time "
            + ", ".join(f"{t_ours / r[3]:.2f}x" for r in rows[:2])
        )
    module.hessian_vector_product = original


def part_d(device, args) -> None:
    n = args.measure_size
    x, y = cifar_like(n, device)
    scale = args.eval_size / n
    print(
        f"(d) paper configuration per checkpoint: K = {args.max_k}, {args.probes} probes, "
        f"{args.lanczos_iters} Lanczos steps, {args.eval_size} images "
        f"(measured at {n}, scaled x{scale:g})"
    )
    vit_options = {"dropout": 0.1}
    for arch, options in (("resnet18", {}), ("vit", vit_options)):
        torch.manual_seed(0)
        model = build_model(arch, num_classes=10, in_channels=3, image_size=32, options=options)
        operator = HessianOperator(
            model,
            x,
            y,
            device=device,
            micro_batch_size=args.micro_batch_size,
            memory_budget_gb=args.memory_budget_gb,
        )
        space = operator.space
        ks = [min(numel, args.max_k) for numel in space.numels]
        v = torch.randn(1, space.dim, generator=torch.Generator().manual_seed(1)).to(device)
        params = list(operator.model.parameters())

        def gradient(operator=operator, params=params):
            loss = F.cross_entropy(operator.model(operator.x), operator.y)
            return torch.autograd.grad(loss, params)

        t_grad = best_time(gradient, device, 1)
        t_full = best_time(lambda operator=operator, v=v: operator.matmul(v), device, 1)
        t_blocks = []
        for b, numel in enumerate(space.numels):
            unit = torch.zeros(1, numel, device=device)
            unit[0, 0] = 1.0
            t_blocks.append(
                best_time(
                    lambda b=b, unit=unit, op=operator: op.block_matmul(b, unit), device, 1, False
                )
            )
        sub = scale * sum(k * t for k, t in zip(ks, t_blocks, strict=True))
        full = scale * (args.probes + args.lanczos_iters) * t_full
        print(
            f"    {arch}: {len(space)} blocks, {space.dim:,} parameters; at {n} images: "
            f"gradient {t_grad:.3f} s, full HVP {t_full:.3f} s ({t_full / t_grad:.2f}x), "
            f"block product mean {np.mean(t_blocks):.3f} s"
        )
        print(
            f"      sub-Hessians: sum_b k_b t_b = {sum(ks)} products -> {sub:,.0f} s; "
            f"traces + top eigenvalue: ({args.probes} + {args.lanczos_iters}) "
            f"x {scale * t_full:.2f} s "
            f"-> {full:,.0f} s; total {sub + full:,.0f} s = {(sub + full) / 3600:.2f} h"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--images", type=int, default=128, help="images for (a)-(c)")
    parser.add_argument("--max-k", type=int, default=64)
    parser.add_argument("--eval-size", type=int, default=2048, help="(d): the paper's eval set")
    parser.add_argument("--measure-size", type=int, default=None, help="(d): default 32 on CPU")
    parser.add_argument("--micro-batch-size", type=int, default=None, help="(d)")
    parser.add_argument(
        "--memory-budget-gb", type=float, default=None, help="(d): GiB (default: unbounded)"
    )
    parser.add_argument("--probes", type=int, default=100, help="(d)")
    parser.add_argument("--lanczos-iters", type=int, default=30, help="(d)")
    parser.add_argument("--parts", default="abcd")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.measure_size is None:
        args.measure_size = args.eval_size if device.type == "cuda" else 32
    print(f"device {device}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    x, y = cifar_like(args.images, device)
    model = trained_cnn(x, y, device) if set(args.parts) & set("abc") else None
    if "a" in args.parts:
        part_a(model, x, y, device, args.repeats)
    if "b" in args.parts:
        part_b(model, x, y, device, args.repeats, args.max_k)
    if "c" in args.parts:
        torch.manual_seed(1)
        vit = build_model("vit", num_classes=10, in_channels=3, image_size=32, options=SMALL_VIT)
        models = {"small CNN, trained": model, "small CNN at init": SmallCNN(), "small ViT": vit}
        part_c(
            {name: m.to(device).eval() for name, m in models.items()}, x, y, device, args.repeats
        )
    if "d" in args.parts:
        part_d(device, args)


if __name__ == "__main__":
    main()
