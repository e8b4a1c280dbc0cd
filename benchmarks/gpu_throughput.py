"""Training throughput of the paper's models on CIFAR-10-sized data: images/s and s per epoch.

Runs the real training step (``Trainer.step`` on batches of the on-device loader, with random
crop and flip) for ResNet18 (batch 128) and the ViT (batch 512) at the paper's sizes, on
synthetic 3x32x32 images, and prints the projected time of one 50,000-image epoch and of the
paper's 200 epochs. One short run on a lent GPU measures both:

    python benchmarks/gpu_throughput.py --device cuda
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synthetic import initial_weights, sgd_run_spec, synthetic_dataset  # noqa: E402

from infoopt.records import RunSpec  # noqa: E402
from infoopt.train import Trainer  # noqa: E402

CIFAR_TRAIN = 50_000
SETTINGS = {"resnet18": 128, "vit": 512}


def throughput(trainer: Trainer, warmup: int, steps: int) -> float:
    """Training images per second over ``steps`` steps after ``warmup`` steps."""
    batches = trainer.loader.epoch(0)
    for _ in range(warmup):
        trainer.step(*next(batches))
    if trainer.device.type == "cuda":
        torch.cuda.synchronize(trainer.device)
    start = time.perf_counter()
    images = 0
    for _ in range(steps):
        x, y = next(batches)
        trainer.step(x, y)
        images += len(y)
    if trainer.device.type == "cuda":
        torch.cuda.synchronize(trainer.device)
    return images / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=50, help="timed steps per model")
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args()
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device: {name}; torch {torch.__version__}")
    with tempfile.TemporaryDirectory(prefix="infoopt-gpu-") as tmp:
        folder = Path(tmp)
        for arch, batch in SETTINGS.items():
            images = batch * (args.warmup + args.steps)
            data = synthetic_dataset(folder / f"{arch}.npz", train=images, test=batch)
            spec = sgd_run_spec(arch, batch)
            init = initial_weights(folder / f"{arch}-init.pt", arch, spec["model"])
            trainer = Trainer(RunSpec.from_dict(spec), init, data, folder / arch, device)
            rate = throughput(trainer, args.warmup, args.steps)
            epoch = CIFAR_TRAIN / rate
            print(
                f"{arch:9s} batch {batch:4d} ({trainer.amp_dtype or torch.float32}, channels_last "
                f"{trainer.channels_last}): {rate:9.0f} images/s, {epoch:7.1f} s per CIFAR-10 "
                f"epoch, {200 * epoch / 3600:6.2f} h for 200 epochs"
            )


if __name__ == "__main__":
    main()
