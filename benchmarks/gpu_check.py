"""Everything the project needs to know from one short run on a lent GPU, in one command.

For the paper's ResNet18 and ViT on CIFAR-shaped synthetic data it prints:

1. training images/s in fp32 and in bf16 autocast (channels-last on CUDA), and the projected
   hours of the paper's 200 epochs;
2. Hessian-vector product / gradient time, eager, and compiled (``torch.compile`` of the
   forward-over-reverse product ``jvp(grad(loss))``; its compile time is printed apart), and
   the Gauss-Newton sub-Hessians' time per column (the blocks whose Hessian is their
   Gauss-Newton block: every ResNet18 block);
3. the peak memory of the Hessian at ``--images`` images (the paper: 2,048) under the default
   ``hessian.memory_budget_gb``, with the operator's micro-batch plan;
4. the cost model's numbers for the device (``src/infoopt/hessian/costs.yaml``'s section, to
   paste there), measured at ``--product-images``, and the Hessian time of one checkpoint at the
   paper's configuration that the model predicts from them;
5. one checkpoint's per-block entropy gaps from float32 products against float64 ones (is
   float32 enough?).

On a GPU (under 10 minutes on an H200-class card)::

    python benchmarks/gpu_check.py --device cuda

``--device cpu`` runs the same code at reduced sizes (tests/test_gpu_check.py does, in CI).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_throughput import CIFAR_TRAIN, SETTINGS, throughput  # noqa: E402
from hessian_cost import (  # noqa: E402
    ARCHS,
    PAPER,
    best_time,
    cifar_like,
    forward_over_reverse,
    part_d,
    rss_bytes,
)
from synthetic import initial_weights, sgd_run_spec, synthetic_dataset  # noqa: E402

from infoopt.hessian.blocks import block_coordinates, block_spectrum, sub_hessians  # noqa: E402
from infoopt.hessian.hvp import HessianOperator  # noqa: E402
from infoopt.models import build_model  # noqa: E402
from infoopt.records import RunSpec  # noqa: E402
from infoopt.train import Trainer  # noqa: E402


def paper_model(arch: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(arch, num_classes=10, in_channels=3, image_size=32)


def training(device: torch.device, args: argparse.Namespace) -> None:
    print("1. training throughput (images/s; projected hours of 200 CIFAR-10 epochs)")
    with tempfile.TemporaryDirectory(prefix="infoopt-gpu-check-") as tmp:
        folder = Path(tmp)
        for arch in ARCHS:
            batch = args.batch or SETTINGS[arch]
            images = batch * (args.warmup + args.steps)
            data = synthetic_dataset(folder / f"{arch}.npz", train=images, test=batch)
            for precision in ("fp32", "bf16"):
                spec = sgd_run_spec(arch, batch)
                spec["training"] |= {"precision": precision, "channels_last": "auto"}
                init = initial_weights(folder / f"{arch}-init.pt", arch, spec["model"])
                trainer = Trainer(
                    RunSpec.from_dict(spec), init, data, folder / f"{arch}-{precision}", device
                )
                rate = throughput(trainer, args.warmup, args.steps)
                hours = 200 * CIFAR_TRAIN / rate / 3600
                rates = f"{rate:9.0f} images/s, {hours:.2f} h"
                print(f"   {arch:8s} {precision} batch {batch:4d}: {rates}")


def products(device: torch.device, args: argparse.Namespace) -> None:
    print(f"2. Hessian-vector product / gradient at {args.product_images} images")
    x, y = cifar_like(args.product_images, device)
    for arch in ARCHS:
        operator = HessianOperator(paper_model(arch), x, y, device=device)
        params = list(operator.model.parameters())
        v = torch.randn(1, operator.space.dim, generator=torch.Generator().manual_seed(1))
        v = v.to(device)

        def gradient(operator=operator, params=params):
            return torch.autograd.grad(
                F.cross_entropy(operator.model(operator.x), operator.y), params
            )

        t_grad = best_time(gradient, device, args.repeats)
        t_eager = best_time(lambda operator=operator, v=v: operator.matmul(v), device, args.repeats)
        line = f"   {arch:8s} gradient {t_grad:.4f} s, HVP eager {t_eager / t_grad:.2f}x"
        if args.compile:
            compiled, seconds = compiled_product(operator, v, device, args.repeats)
            line += f", compiled {compiled / t_grad:.2f}x (compile {seconds:.0f} s)"
        exact = sorted(operator.gauss_newton.blocks)
        coords = block_coordinates(operator.space, PAPER.max_k, seed=0)
        chosen = [coords[b] for b in exact]
        t_columns = best_time(
            lambda operator=operator, exact=exact, chosen=chosen: operator.gauss_newton_submatrices(
                exact, chosen
            ),
            device,
            1,
        )
        per_column = t_columns / max(sum(len(c) for c in chosen), 1) / t_grad
        line += f", Gauss-Newton {per_column:.4f}x per column ({len(exact)} blocks)"
        print(line)


def compiled_product(operator: HessianOperator, v: torch.Tensor, device, repeats: int):
    """Time of a compiled forward-over-reverse product, and of its compilation."""
    product = forward_over_reverse(
        operator, dict(enumerate(operator.space.split(v[0]))), "inductor"
    )
    started = time.perf_counter()
    with torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.MATH):
        product()
        compile_seconds = time.perf_counter() - started
        return best_time(product, device, repeats, warm_up=False), compile_seconds


def peak_memory(device: torch.device) -> float:
    """GiB: the device's peak allocation on CUDA, the process's peak RSS on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def hessian_memory(device: torch.device, args: argparse.Namespace) -> None:
    budget = PAPER.memory_budget_gb
    print(f"3. Hessian at {args.images} images under the default budget ({budget:g} GiB)")
    x, y = cifar_like(args.images, device)
    for arch in ARCHS:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        operator = HessianOperator(paper_model(arch), x, y, device=device, memory_budget_gb=budget)
        v = torch.randn(1, operator.space.dim, generator=torch.Generator().manual_seed(1))
        v = v.to(device)
        t_full = best_time(lambda operator=operator, v=v: operator.matmul(v), device, 1)
        plan = operator.plan
        print(
            f"   {arch:8s} plan {plan.size} x {plan.count} images ({plan.kept} kept), "
            f"peak {peak_memory(device):.2f} GiB; full product {t_full:.3f} s"
        )


def precision(device: torch.device, args: argparse.Namespace) -> None:
    print(f"5. per-block entropy gaps, float32 vs float64 products (K = {args.gap_k})")
    x, y = cifar_like(args.gap_images, device)
    for arch in ARCHS:
        model = paper_model(arch)
        gaps = {}
        for dtype in ("float32", "float64"):
            operator = HessianOperator(model, x, y, device=device, dtype=dtype)
            coords = block_coordinates(operator.space, args.gap_k, seed=0)
            blocks = range(min(args.gap_blocks or len(coords), len(coords)))
            gaps[dtype] = np.array(
                [block_spectrum(m).gap for m in sub_hessians(operator, coords, blocks)]
            )
        error = np.abs(gaps["float32"] - gaps["float64"])
        relative = error / np.maximum(np.abs(gaps["float64"]), 1e-12)
        print(
            f"   {arch:8s} {len(error)} blocks: max |Δgap| {np.nanmax(error):.2e}, "
            f"max relative {np.nanmax(relative):.2e}, mean gap {np.nanmean(gaps['float64']):.4f}"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--steps", type=int, default=30, help="timed training steps")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch", type=int, default=None, help="default: the paper's")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--product-images", type=int, default=256)
    parser.add_argument("--images", type=int, default=2048, help="the Hessian's test images")
    parser.add_argument("--sampled-blocks", type=int, default=12)
    parser.add_argument("--gap-images", type=int, default=512)
    parser.add_argument("--gap-k", type=int, default=PAPER.max_k)
    parser.add_argument("--gap-blocks", type=int, default=None, help="default: every block")
    parser.add_argument(
        "--compile", action=argparse.BooleanOptionalAction, default=None, help="default: on CUDA"
    )
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if args.compile is None:
        args.compile = device.type == "cuda"
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device: {name}; torch {torch.__version__}")
    torch.zeros(1, device=device)  # on CUDA, its context belongs to the process's baseline
    base_bytes = rss_bytes()
    training(device, args)
    products(device, args)
    hessian_memory(device, args)
    print("4. ", end="")
    part_d(device, base_bytes, args.product_images, args.sampled_blocks, args.repeats)
    precision(device, args)


if __name__ == "__main__":
    main()
