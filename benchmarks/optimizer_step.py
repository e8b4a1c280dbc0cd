"""Time per optimizer step of the Lion family against torch's AdamW, side by side in one process.

The parameters are those of the project's CIFAR ResNet18 (62 tensors; 11.2M parameters at full
size) with fixed random gradients. Each optimizer owns a copy of the parameters; after warm-up,
the optimizers take turns, one step each per round, so load changes hit all of them alike.
Ratios are against our Lion with the same implementation (per-tensor loop or foreach).

    .venv/bin/python benchmarks/optimizer_step.py --device cpu --size half
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from infoopt.models import build_model
from infoopt.optim import build_optimizer
from infoopt.seeding import generator

SIZES = {"full": 64, "half": 32, "quarter": 16}  # ResNet18 base width
OURS = ("lion", "lion_tanh", "lion_bayes", "lion_soft")


def parameter_set(
    width: int, device: torch.device
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """ResNet18's parameter tensors (values) and one fixed gradient per tensor."""
    model = build_model(
        "resnet18", num_classes=10, in_channels=3, image_size=32, options={"width": width}
    )
    gen = generator(device, "benchmark", "optimizer_step")
    values = [p.detach().to(device) for p in model.parameters()]
    grads = [torch.randn(v.shape, generator=gen, device=device) * 1e-2 for v in values]
    return values, grads


def contenders(foreach_modes: list[bool]) -> list[tuple[str, str, bool]]:
    """(label, optimizer name, foreach) in print order."""
    rows = [(name, name, foreach) for foreach in foreach_modes for name in OURS]
    return [*rows, ("adamw (torch)", "adamw", True)]


def time_steps(args: argparse.Namespace) -> None:
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    values, grads = parameter_set(SIZES[args.size], device)
    modes = {"loop": [False], "foreach": [True], "both": [False, True]}[args.impl]
    rows = contenders(modes)
    optimizers = []
    for _, name, foreach in rows:
        params = [torch.nn.Parameter(v.clone()) for v in values]
        for p, g in zip(params, grads, strict=True):
            p.grad = g  # optimizers never write to grads, so all of them share one set
        optimizers.append(build_optimizer(name, params, lr=1e-4, foreach=foreach))

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for optimizer in optimizers:
        for _ in range(args.warmup):
            optimizer.step()
    times: list[list[float]] = [[] for _ in optimizers]
    for r in range(args.repeats):
        # rotate the order each round so no optimizer always runs right after the same one
        order = list(range(len(optimizers)))
        order = order[r % len(order) :] + order[: r % len(order)]
        for i in order:
            sync()
            start = time.perf_counter()
            optimizers[i].step()
            sync()
            times[i].append(time.perf_counter() - start)

    numel = sum(v.numel() for v in values)
    print(
        f"device {device}, {torch.get_num_threads()} threads, torch {torch.__version__}; "
        f"ResNet18 width {SIZES[args.size]}: {len(values)} tensors, {numel:,} parameters; "
        f"median of {args.repeats} steps after {args.warmup} warm-up"
    )
    medians = [statistics.median(t) for t in times]
    baseline = {foreach: medians[i] for i, (_, name, foreach) in enumerate(rows) if name == "lion"}
    print(f"{'optimizer':<15}{'impl':<9}{'ms/step':>9}{'q25-q75 ms':>17}{'vs our lion':>13}")
    for (label, _, foreach), t, median in zip(rows, times, medians, strict=True):
        q25, _, q75 = statistics.quantiles(t, n=4)
        reference = baseline.get(foreach, baseline.get(not foreach))
        impl = "foreach" if foreach else "loop"
        print(
            f"{label:<15}{impl:<9}{median * 1e3:>9.2f}"
            f"{f'{q25 * 1e3:.2f}-{q75 * 1e3:.2f}':>17}{median / reference:>12.2f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--impl", choices=("loop", "foreach", "both"), default="both")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    time_steps(parser.parse_args())


if __name__ == "__main__":
    main()
