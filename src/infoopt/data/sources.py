"""Raw dataset formats -> :class:`ImageArrays`: CIFAR python batches, scikit-learn digits."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from infoopt.data.arrays import ImageArrays
from infoopt.data.errors import DataError
from infoopt.data.splits import stratified_split
from infoopt.seeding import generator

CIFAR_SIDE = 32
# The 8x8 digits have no official split: 360 of 1797 images, stratified, from this seed.
DIGITS_TEST_SIZE = 360
DIGITS_SPLIT_SEED = 0


def _read_cifar_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """One pickled CIFAR batch: ``data`` uint8 (n, 3072) as R, G, B planes, row-major."""
    if not path.is_file():
        raise DataError(f"the archive has no {path.parent.name}/{path.name}")
    with open(path, "rb") as handle:
        # latin1 reads the original Python 2 pickles' numpy arrays; keys may be str or bytes.
        batch = pickle.load(handle, encoding="latin1")
    if not isinstance(batch, dict):
        raise DataError(f"{path.name} is not a CIFAR batch (a {type(batch).__name__})")
    batch = {key.decode() if isinstance(key, bytes) else key: value for key, value in batch.items()}
    if "data" not in batch or label_key not in batch:
        raise DataError(f"{path.name} lacks 'data' or {label_key!r} (has {sorted(batch)})")
    data = np.asarray(batch["data"])
    labels = np.asarray(batch[label_key], dtype=np.int64)
    side = CIFAR_SIDE
    if data.dtype != np.uint8 or data.shape != (len(labels), 3 * side * side):
        raise DataError(
            f"{path.name}: data is {data.dtype} {data.shape}, expected uint8 "
            f"({len(labels)}, {3 * side * side})"
        )
    return data.reshape(len(labels), 3, side, side), labels


def _read_cifar(root: Path, train: list[str], test: str, label_key: str) -> ImageArrays:
    parts = [_read_cifar_batch(root / name, label_key) for name in train]
    x_test, y_test = _read_cifar_batch(root / test, label_key)
    return ImageArrays(
        x_train=np.concatenate([x for x, _ in parts]),
        y_train=np.concatenate([y for _, y in parts]),
        x_test=x_test,
        y_test=y_test,
    )


def _extracted(path: Path | None) -> Path:
    if path is None:
        raise ValueError("CIFAR is read from its extracted archive; got no directory")
    return Path(path)


def cifar10(extracted: Path | None) -> ImageArrays:
    """CIFAR-10 from the extracted ``cifar-10-python.tar.gz``."""
    root = _extracted(extracted) / "cifar-10-batches-py"
    train = [f"data_batch_{i}" for i in range(1, 6)]
    return _read_cifar(root, train, "test_batch", "labels")


def cifar100(extracted: Path | None) -> ImageArrays:
    """CIFAR-100 (fine labels) from the extracted ``cifar-100-python.tar.gz``."""
    root = _extracted(extracted) / "cifar-100-python"
    return _read_cifar(root, ["train"], "test", "fine_labels")


def digits(extracted: Path | None = None) -> ImageArrays:
    """scikit-learn's bundled 8×8 digits, 0..16 scaled to 0..255, one channel."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    labels = bunch.target.astype(np.int64)
    rng = generator("cpu", DIGITS_SPLIT_SEED, "digits", "split")
    kept, held = stratified_split(torch.from_numpy(labels), DIGITS_TEST_SIZE, rng)
    kept, held = kept.numpy(), held.numpy()
    return ImageArrays(images[kept], labels[kept], images[held], labels[held])
