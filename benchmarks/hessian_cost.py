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
(d) the cost model's numbers (``src/infoopt/hessian/costs.yaml``: per image, a create-graph
    gradient, a full and a block product through a kept graph, the graph's bytes) measured on
    the paper's ResNet18 and ViT at ``--measure-size`` CIFAR-shaped images, printed as the
    device's section of that file, and the model's prediction per checkpoint of the paper's
    configuration from them. Run it alone (``--parts d``): the baseline memory is read first.

Times are the minimum over ``--repeats`` rounds (the machine may be shared), except the slow
baseline of (b), timed once.

    python benchmarks/hessian_cost.py                  # CPU
    python benchmarks/hessian_cost.py --device cuda    # a GPU
    python benchmarks/hessian_cost.py --parts d        # costs.yaml's cpu section
    python benchmarks/hessian_cost.py --parts e --threads 1 --compile   # the alternatives
"""

from __future__ import annotations

import argparse
import copy
import datetime
import functools
import math
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import nn
from torch._dynamo.utils import counters
from torch.func import functional_call
from torch.nn.attention import SDPBackend, sdpa_kernel

from infoopt.hessian.blocks import block_coordinates, sub_hessians
from infoopt.hessian.cost import REFERENCE_SHAPE, load_costs, predict
from infoopt.hessian.hvp import HessianOperator
from infoopt.hessian.options import HessianOptions
from infoopt.hessian.spectrum import lanczos_top_eigenvalue
from infoopt.models import build_model

PAPER = HessianOptions()
ARCHS = ("resnet18", "vit")
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
    function: Callable[[], object],
    device: torch.device,
    repeats: int,
    warm_up: bool = True,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """Minimum time of ``function`` over ``repeats`` calls (after a warm-up call), by ``clock``
    (wall time; ``time.process_time``: this process's CPU time)."""
    if warm_up:
        function()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = clock()
        function()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(clock() - start)
    return min(times)


def interleaved_times(
    functions: list[Callable[[], object]],
    device: torch.device,
    repeats: int,
    clock: Callable[[], float] = time.perf_counter,
) -> list[float]:
    """Minimum time of each function over ``repeats`` rounds that call each in turn,
    so that load from other processes slows all of them alike."""
    times = [[] for _ in functions]
    for function in functions:
        function()
    for _ in range(repeats):
        for function, spent in zip(functions, times, strict=True):
            spent.append(best_time(function, device, 1, warm_up=False, clock=clock))
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


def rss_bytes() -> int:
    """The process's resident memory now (Linux)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def family_costs(arch: str, device: torch.device, images: int, sampled_blocks: int, repeats: int):
    """One family's numbers in costs.yaml, per image, on the paper's model at CIFAR shape with
    ``images`` random images in one kept micro-batch: seconds of building the create-graph
    gradient, of one full product through the kept graph, of one column of a block's sub-Hessian
    (the blocks' mean weighted by k_b at K = 64, each computed as the operator does: the
    Gauss-Newton sub-Hessians of the blocks whose Hessian is their Gauss-Newton block, timed
    together; block products through the kept graph for the others, interpolated between
    ``sampled_blocks`` of them spread over the model: the deeper the block, the cheaper), and the
    graph's bytes. Also the seconds of a full product that rebuilds its graph, which the model
    takes as gradient + product. On the CPU, seconds of CPU time (run it on one thread): what
    other processes' load does not change."""
    clock = time.process_time if device.type == "cpu" else time.perf_counter
    torch.manual_seed(0)
    model = build_model(arch, **REFERENCE_SHAPE)
    x, y = cifar_like(images, device)
    kept = HessianOperator(model, x, y, device=device, memory_budget_gb=math.inf)
    rebuilt = HessianOperator(
        model, x, y, device=device, memory_budget_gb=0.0, micro_batch_size=images
    )
    space = kept.space

    def gradient():
        with sdpa_kernel(SDPBackend.MATH):
            loss = F.cross_entropy(kept.model(kept.x), kept.y)
            return torch.autograd.grad(loss, kept.params, create_graph=True, allow_unused=True)

    v = torch.randn(1, space.dim, generator=torch.Generator().manual_seed(1)).to(device)
    t_gradient, t_full, t_rebuilt = interleaved_times(
        [gradient, lambda: kept.matmul(v), lambda: rebuilt.matmul(v)], device, repeats, clock
    )
    ks = np.array([min(numel, PAPER.max_k) for numel in space.numels])
    exact = sorted(kept.gauss_newton.blocks)
    others = np.array([b for b in range(len(space)) if b not in kept.gauss_newton.blocks])
    columns = 0.0
    if exact:
        coords = block_coordinates(space, PAPER.max_k, seed=0)
        chosen = [coords[b] for b in exact]
        submatrices = functools.partial(kept.gauss_newton_submatrices, exact, chosen)
        columns += best_time(submatrices, device, repeats, warm_up=False, clock=clock)
    if len(others):
        sampled = others[
            np.linspace(0, len(others) - 1, min(sampled_blocks, len(others))).astype(int)
        ]
        times = []
        for block in sampled:
            product = functools.partial(kept.block_matmul, block, units(space, block, 1, device))
            times.append(best_time(product, device, repeats, clock=clock))
        columns += float(np.dot(ks[others], np.interp(others, sampled, times)))
    t_block = columns / ks.sum()
    numbers = {
        "gradient": t_gradient / images,
        "product": t_full / images,
        "block_product": t_block / images,
        "graph_bytes": kept.footprint.per_image,
    }
    return numbers, t_rebuilt / images


def costs_section(
    device: torch.device, base_bytes: int, images: int, sampled_blocks: int, repeats: int
) -> str:
    """``device``'s section of src/infoopt/hessian/costs.yaml, measured now: text to paste over
    it. ``base_bytes``: the process's memory before any model (on CUDA, with its context). On
    the CPU, on one thread."""
    threads = torch.get_num_threads()
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        torch.set_num_threads(1)
        name = f"{platform.processor() or 'CPU'} ({os.cpu_count()} cores), one thread, CPU time"
    lines = [
        f"{device.type}:  # {Path(sys.argv[0]).name} on {name}, torch {torch.__version__}, "
        f"{images} images, {datetime.date.today()}",
        f"  base_bytes: {base_bytes:.3e}",
    ]
    for arch in ARCHS:
        numbers, rebuilt = family_costs(arch, device, images, sampled_blocks, repeats)
        lines.append(f"  {arch}: {{{', '.join(f'{k}: {v:.3e}' for k, v in numbers.items())}}}")
        check = numbers["gradient"] + numbers["product"]
        lines.append(f"  # rebuilt product {rebuilt:.3g} s/image; gradient + product {check:.3g}")
    torch.set_num_threads(threads)
    return "\n".join(lines)


def forward_over_reverse(
    operator: HessianOperator, tangents: dict[int, torch.Tensor], backend: str | None = None
) -> Callable[[], tuple[torch.Tensor, ...]]:
    """``(H v)_b`` for the blocks ``b`` of ``tangents`` (block -> ``v_b``; ``v`` is zero on the
    others) as ``jvp(grad(loss))`` in those blocks (torch.func over ``functional_call``): eager,
    or ``torch.compile``d with ``backend``. Call it under the math attention kernel."""
    names = [operator.space.names[b] for b in tangents]
    # Copies, not views: torch.compile cannot trace views of functorch's tensors (graph breaks).
    values = tuple(operator.params[b].detach().clone() for b in tangents)
    directions = tuple(t.clone() for t in tangents.values())

    def loss(*weights: torch.Tensor) -> torch.Tensor:
        params = dict(zip(names, weights, strict=True))
        logits = functional_call(operator.model, params, (operator.x,), strict=False)
        return F.cross_entropy(logits, operator.y)

    grad = torch.func.grad(loss, argnums=tuple(range(len(values))))

    def product() -> tuple[torch.Tensor, ...]:
        return torch.func.jvp(grad, values, directions)[1]

    return product if backend is None else torch.compile(product, backend=backend)


def units(space, block: int, count: int, device: torch.device) -> torch.Tensor:
    """The first ``count`` unit vectors of ``block`` (count, numel)."""
    vectors = torch.zeros(count, space.numels[block], device=device)
    vectors[torch.arange(count), torch.arange(count) % space.numels[block]] = 1.0
    return vectors


def alternatives(arch, device, images, repeats, sampled_blocks, compile_products) -> None:
    """Part (e) for one model family."""
    cpu = device.type == "cpu"
    clock = time.process_time if cpu and torch.get_num_threads() == 1 else time.perf_counter
    torch.manual_seed(0)
    x, y = cifar_like(images, device)
    operator = HessianOperator(build_model(arch, **REFERENCE_SHAPE), x, y, device=device)
    space = operator.space
    ks = np.array([min(numel, PAPER.max_k) for numel in space.numels])
    v = torch.randn(1, space.dim, generator=torch.Generator().manual_seed(1)).to(device)
    full = dict(enumerate(space.split(v[0])))

    def gradient():
        with sdpa_kernel(SDPBackend.MATH):
            loss = F.cross_entropy(operator.model(operator.x), operator.y)
            return torch.autograd.grad(loss, operator.params, create_graph=True)

    def timed(function, count=repeats, warm_up=True):
        with sdpa_kernel(SDPBackend.MATH):
            return best_time(function, device, count, warm_up=warm_up, clock=clock)

    with sdpa_kernel(SDPBackend.MATH):
        t_grad, t_full, t_forward = interleaved_times(
            [gradient, lambda: operator.matmul(v), forward_over_reverse(operator, full)],
            device,
            repeats,
            clock,
        )
    how = "CPU time" if clock is time.process_time else "wall time"
    print(f"    {arch}, {images} images, {space.dim:,} parameters, {len(space)} blocks ({how}):")
    print("      seconds; ratio to a create-graph gradient; to the operator's double-backward")

    def row(label: str, seconds: float, today: float | None = None, note: str = "") -> None:
        against = f"{seconds / today:6.2f}x" if today else " " * 7
        print(f"      {label:46s} {seconds:9.4f} {seconds / t_grad:7.3f}x {against} {note}")

    row("gradient (create-graph)", t_grad)
    row("full product, double-backward (ours)", t_full, t_full)
    row("full product, forward-over-reverse, eager", t_forward, t_full)
    if compile_products:
        try:
            product = forward_over_reverse(operator, full, "inductor")
            counters.clear()
            started = time.perf_counter()
            with sdpa_kernel(SDPBackend.MATH):
                product()
            compiling = time.perf_counter() - started
            # Where tracing fails (an op without a meta kernel), that part runs eagerly.
            breaks = sum(counters["graph_break"].values())
            note = f"(compiled in {compiling:.0f} s, {breaks} graph breaks)"
            row(
                "full product, forward-over-reverse, compiled",
                timed(product, warm_up=False),
                t_full,
                note,
            )
        except Exception as error:  # a backend without support: say so, go on
            print(f"      full product, compiled: failed ({type(error).__name__}: {error})"[:200])
    sampled = np.linspace(0, len(space) - 1, min(sampled_blocks, len(space))).astype(int)
    block_times = []
    for block in sampled:
        unit = units(space, block, 1, device)
        block_times.append(timed(functools.partial(operator.block_matmul, block, unit)))
    spread = np.interp(range(len(space)), sampled, block_times)
    t_block = float(np.dot(ks, spread) / ks.sum())
    for name, index in (("shallowest", 0), ("middle", len(sampled) // 2), ("deepest", -1)):
        block = sampled[index]
        row(f"block product, {name}: {space.names[block]}"[:46], block_times[index], t_block)
    row("block product, k_b-weighted mean (ours)", t_block, t_block)
    middle = sampled[len(sampled) // 2]
    t_middle = block_times[len(sampled) // 2]
    unit = units(space, middle, 1, device)[0].view(space.shapes[middle])
    t_eager = timed(forward_over_reverse(operator, {middle: unit}))
    row("middle block, forward-over-reverse, eager", t_eager, t_middle, "(vs the middle block)")
    for batch in (4, 8, 16, 64):
        batched = HessianOperator(operator.model, x, y, device=device, vector_batch=batch)
        vectors = units(space, middle, batch, device)
        seconds = timed(functools.partial(batched.block_matmul, middle, vectors), 1) / batch
        row(
            f"middle block, vmapped by {batch}, per vector",
            seconds,
            t_middle,
            "(vs the middle block)",
        )
    exact = sorted(operator.gauss_newton.blocks)
    if exact:
        coords = block_coordinates(space, PAPER.max_k, seed=0)
        chosen = [coords[b] for b in exact]
        submatrices = functools.partial(operator.gauss_newton_submatrices, exact, chosen)
        columns = int(ks[exact].sum())
        seconds = timed(submatrices, 1, warm_up=False) / columns
        today = float(np.dot(ks[exact], spread[exact]) / columns)
        note = f"(per column, {len(exact)} of {len(space)} blocks; vs their weighted mean)"
        row("Gauss-Newton sub-Hessians (ours)", seconds, today, note)


def part_e(device, images, repeats, sampled_blocks, compile_products, archs=ARCHS) -> None:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan
    threads = torch.get_num_threads()
    print(f"the alternatives, {threads} thread(s), load average {load:.2f} at the start:")
    for arch in archs:
        alternatives(arch, device, images, repeats, sampled_blocks, compile_products)


def part_d(device, base_bytes, images, sampled_blocks, repeats) -> None:
    print("the cost model's numbers (paste into src/infoopt/hessian/costs.yaml):")
    section = costs_section(device, base_bytes, images, sampled_blocks, repeats)
    print(section)
    costs = load_costs() | yaml.safe_load(section)
    print("    predicted per checkpoint of the paper's configuration:")
    for arch in ARCHS:
        model = {"name": arch, **REFERENCE_SHAPE, "options": {}}
        prediction = predict(PAPER, model, device_kind=device.type, costs=costs)
        print(f"    {arch}: {prediction.summary()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--images", type=int, default=128, help="images for (a)-(c)")
    parser.add_argument("--max-k", type=int, default=64, help="(b)")
    parser.add_argument("--measure-size", type=int, default=None, help="(d): 32 on CPU, else 256")
    parser.add_argument("--sampled-blocks", type=int, default=12, help="(d)")
    parser.add_argument("--parts", default="abcd", help="e: the alternatives (minutes)")
    parser.add_argument(
        "--compile", action=argparse.BooleanOptionalAction, default=False, help="(e)"
    )
    parser.add_argument("--archs", default=",".join(ARCHS), help="(e): models, comma-separated")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.zeros(1, device=device)  # on CUDA, its context belongs to the baseline
    base_bytes = rss_bytes()
    if args.measure_size is None:
        args.measure_size = 32 if device.type == "cpu" else 256
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
        print("(d) ", end="")
        part_d(device, base_bytes, args.measure_size, args.sampled_blocks, args.repeats)
    if "e" in args.parts:
        print("(e) ", end="")
        archs = args.archs.split(",")
        part_e(device, args.measure_size, args.repeats, args.sampled_blocks, args.compile, archs)


if __name__ == "__main__":
    main()
