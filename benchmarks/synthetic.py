"""Synthetic CIFAR-sized data and initial weights, so benchmarks need no download."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from infoopt.data.arrays import ImageArrays, write_arrays
from infoopt.initial import save_initial_weights

CIFAR_SHAPE = (3, 32, 32)


def synthetic_dataset(path: Path, train: int, test: int, classes: int = 10, seed: int = 0) -> Path:
    """Random uint8 images with random labels, in the prepared-array format."""
    rng = np.random.default_rng(seed)
    arrays = ImageArrays(
        x_train=rng.integers(0, 256, (train, *CIFAR_SHAPE), dtype=np.uint8),
        y_train=rng.integers(0, classes, train).astype(np.int64),
        x_test=rng.integers(0, 256, (test, *CIFAR_SHAPE), dtype=np.uint8),
        y_test=rng.integers(0, classes, test).astype(np.int64),
    )
    write_arrays(path, arrays, classes)
    return path


def model_spec(arch: str, classes: int = 10) -> dict:
    return {"name": arch, "num_classes": classes, "in_channels": 3, "image_size": 32, "options": {}}


def sgd_run_spec(arch: str, batch: int) -> dict:
    """A one-epoch SGD run of the paper-sized ``arch`` (see ``infoopt.config.run_spec``)."""
    return {
        "dataset": "synthetic",
        "arch": arch,
        "optimizer": "sgd",
        "seed": 0,
        "model": model_spec(arch),
        "algorithm": "sgd",
        "hparams": {"lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4},
        "training": {
            "epochs": 1,
            "batch_size": batch,
            "warmup_epochs": 0,
            "augment": {"crop_padding": 4, "flip": True},
            "checkpoints": [1.0],
            "schedule": "cosine",
            "eval_batch_size": 1024,
            "resume_every_epochs": 1,
            "precision": "auto",
            "channels_last": "auto",
        },
    }


def initial_weights(path: Path, arch: str, spec: dict) -> Path:
    save_initial_weights({"dataset": "synthetic", "arch": arch, "seed": 0, "model": spec}, path)
    return path
