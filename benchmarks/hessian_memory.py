"""Peak memory and time per Hessian-vector product under a memory budget, against the unbounded
operator (one micro-batch, its graph kept), for the paper's ResNet18 and ViT on CIFAR-shaped
random images.

Every configuration runs in a fresh subprocess (this script with ``--child``), so that its peak
RSS (``ru_maxrss`` of that child alone, from ``os.wait4``) is not the maximum of earlier runs.
The child reports its RSS before the operator exists (interpreter, torch, model, data: the
baseline), the plan, the setup time (with a budget: the footprint's probe), and the time
of the fastest of ``--products`` full products (one vector, as Lanczos asks for) after a
warm-up call that builds the kept graphs: the steady state of a long measurement. Each extra
vector of a call shares a rebuilt graph, so Hutchinson's probe batches and the sub-Hessians'
block products pay less for rebuilding than this.

Configurations per model:

- unbounded, at ``--unbounded-images`` (its graph would not fit this machine at ``--images``):
  memory above the baseline and time are scaled linearly to ``--images`` (said in the output);
- the default budget at ``--unbounded-images``: it keeps everything, so it should cost nothing;
- each of ``--budgets`` (GiB) at ``--images``. What a plan keeps depends on images per GiB:
  2 GiB at 512 images keeps about the share that the default 8 GiB keeps of the paper's 2,048
  (27 % and 32 % of the images for ResNet18, 14 % and 16 % for the ViT), which this machine
  could not hold unbounded.

    python benchmarks/hessian_memory.py --threads 2
    python benchmarks/hessian_memory.py --archs vit --budgets 2 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

MIB = 2**20
GIB = 2**30


def child(args: argparse.Namespace) -> None:
    """One configuration: print a JSON line of baseline RSS, plan and timings."""
    import torch

    from infoopt.hessian.hvp import HessianOperator
    from infoopt.models import build_model

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model(args.arch, num_classes=10, in_channels=3, image_size=32)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(args.images, 3, 32, 32, generator=g), torch.randint(0, 10, (args.images,))
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    started = time.perf_counter()
    operator = HessianOperator(model, x, y, memory_budget_gb=args.budget)
    built = time.perf_counter() - started
    last = len(operator.space) - 1
    started = time.perf_counter()
    operator.block_matmul(last, torch.ones(1, operator.space.numels[last]))
    warm_up = time.perf_counter() - started
    v = torch.randn(1, operator.space.dim, generator=g)
    times = []
    for _ in range(args.products):
        started = time.perf_counter()
        operator.matmul(v)
        times.append(time.perf_counter() - started)
    footprint = operator.footprint
    record = {
        "baseline": baseline,
        "plan": [operator.plan.size, operator.plan.count, operator.plan.kept],
        "per_image": footprint.per_image if footprint else None,
        "construct": built,
        "warm_up": warm_up,
        "product": min(times),
    }
    print(json.dumps(record))


def measure(arch: str, images: int, budget: float | None, args) -> dict:
    """Run one configuration in a fresh process; its own peak RSS joins its record."""
    command = [sys.executable, __file__, "--child", "--arch", arch, "--images", str(images)]
    command += ["--threads", str(args.threads), "--products", str(args.products)]
    if budget is not None:
        command += ["--budget", str(budget)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    started = time.perf_counter()
    _, status, usage = os.wait4(process.pid, 0)
    output = process.stdout.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{arch}, {images} images, budget {budget}: the child failed")
    record = json.loads(output.strip().splitlines()[-1])
    record |= {"peak": usage.ru_maxrss * 1024, "wall": time.perf_counter() - started}
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=["resnet18", "vit"])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--unbounded-images", type=int, default=128)
    parser.add_argument("--budgets", type=float, nargs="*", default=[2.0], help="GiB")
    parser.add_argument("--products", type=int, default=1, help="timed products (minimum)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--arch", help=argparse.SUPPRESS)
    parser.add_argument("--budget", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    from infoopt.hessian.options import HessianOptions

    default = HessianOptions().memory_budget_gb
    n, small = args.images, args.unbounded_images
    print(
        f"{args.threads} threads. Unbounded: measured at {small} images; at {n}, its memory "
        f"above the baseline and its time are that run's scaled x{n / small:g}. Ratios are "
        "against the unbounded operator at the same number of images."
    )
    header = (
        f"  {'':22s} {'images':>6s} {'size x count, kept':>19s} {'peak RSS':>9s} "
        f"{'above base':>10s} {'s/product':>9s} {'memory':>7s} {'time':>6s} {'setup s':>7s}"
    )
    for arch in args.archs:
        unbounded = measure(arch, small, None, args)
        rows = [("unbounded", small, unbounded)]
        rows.append((f"default {default:g} GiB", small, measure(arch, small, default, args)))
        rows += [(f"{budget:g} GiB", n, measure(arch, n, budget, args)) for budget in args.budgets]
        per_image = rows[1][2]["per_image"]
        print(f"{arch}: the create-graph gradient saves {per_image / MIB:.2f} MiB per image")
        print(header)
        above_unbounded = (unbounded["peak"] - unbounded["baseline"]) / small
        product_unbounded = unbounded["product"] / small
        for label, images, record in rows:
            above = record["peak"] - record["baseline"]
            size, count, kept = record["plan"]
            plan = f"{size} x {count}, {kept}"
            print(
                f"  {label:22s} {images:6d} {plan:>19s} {record['peak'] / GIB:7.2f} G "
                f"{above / GIB:8.2f} G {record['product']:9.2f} "
                f"{above / (above_unbounded * images):6.2f}x "
                f"{record['product'] / (product_unbounded * images):5.2f}x "
                f"{record['construct']:7.2f}"
            )
        print(
            f"  {'unbounded (scaled)':22s} {n:6d} {f'{n} x 1, 1':>19s} "
            f"{(unbounded['baseline'] + above_unbounded * n) / GIB:7.2f} G "
            f"{above_unbounded * n / GIB:8.2f} G {product_unbounded * n:9.2f}   1.00x  1.00x"
        )


if __name__ == "__main__":
    main()
