"""Our training step against a bare PyTorch loop: same model, same batch, side by side.

"Ours" is ``Trainer.step`` (per-step seeding, accumulators on the device, LR schedule, and the
run's precision and memory format); "bare" is forward, cross-entropy, backward, optimizer step
with the same precision and memory format. Rounds alternate between the two so that a noisy
machine slows both alike. Goal: ours / bare <= 1.05.

    python benchmarks/train_step.py --arch resnet18 --device cuda --batch 128
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synthetic import initial_weights, sgd_run_spec, synthetic_dataset  # noqa: E402

from infoopt.optim import build_optimizer  # noqa: E402
from infoopt.records import RunSpec  # noqa: E402
from infoopt.train import Trainer, autocast  # noqa: E402


def bare_loop(model, optimizer, x, y, steps, amp_dtype, device):
    for _ in range(steps):
        with autocast(device, amp_dtype):
            loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def ours_loop(trainer, x, y, steps):
    for _ in range(steps):
        trainer.step(x, y)


def timed(device, function, *args) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    function(*args)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet18", choices=["resnet18", "vit"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5, help="steps per timed round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    with tempfile.TemporaryDirectory(prefix="infoopt-bench-") as tmp:
        measure(args, device, Path(tmp))


def measure(args: argparse.Namespace, device: torch.device, folder: Path) -> None:
    spec = sgd_run_spec(args.arch, args.batch)
    data = synthetic_dataset(folder / "data.npz", train=args.batch * 4, test=args.batch)
    init = initial_weights(folder / "init.pt", args.arch, spec["model"])
    trainer = Trainer(RunSpec.from_dict(spec), init, data, folder / "run", device)
    x, y = next(iter(trainer.loader.epoch(0)))

    model = copy.deepcopy(trainer.model)
    optimizer = build_optimizer("sgd", model.parameters(), **spec["hparams"])
    x_bare = x.contiguous(memory_format=torch.channels_last) if trainer.channels_last else x

    ours_loop(trainer, x, y, 2)
    bare_loop(model, optimizer, x_bare, y, 2, trainer.amp_dtype, device)
    ours, bare = [], []
    for _ in range(args.rounds):
        ours.append(timed(device, ours_loop, trainer, x, y, args.steps) / args.steps)
        bare.append(
            timed(
                device,
                bare_loop,
                model,
                optimizer,
                x_bare,
                y,
                args.steps,
                trainer.amp_dtype,
                device,
            )
            / args.steps
        )
    o, b = statistics.median(ours), statistics.median(bare)
    print(
        f"{args.arch} on {device} ({torch.get_num_threads()} threads), batch {args.batch}, "
        f"precision {trainer.amp_dtype or torch.float32}, channels_last {trainer.channels_last}"
    )
    print(f"bare PyTorch step: {1000 * b:8.2f} ms (median of {args.rounds} rounds)")
    print(f"infoopt step:      {1000 * o:8.2f} ms")
    print(f"ratio ours/bare:   {o / b:8.3f}  (goal <= 1.05)")


if __name__ == "__main__":
    main()
