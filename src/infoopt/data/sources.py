"""Raw dataset formats -> :class:`ImageArrays`: CIFAR python batches, MNIST's gzipped IDX files
(also Fashion-MNIST's and KMNIST's), SVHN's MATLAB files, STL-10's binary files, scikit-learn
digits."""

from __future__ import annotations

import gzip
import math
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
        raise ValueError("a downloaded dataset is read from its directory; got none")
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


def _read_idx(path: Path, dims: int) -> np.ndarray:
    """A gzipped IDX file of unsigned bytes: magic 0x0000080D (D the dimensions), each
    dimension's size as a big-endian int32, then the values, row-major."""
    if not path.is_file():
        raise DataError(f"the download has no {path.name}")
    with gzip.open(path, "rb") as handle:
        data = handle.read()
    header = 4 + 4 * dims
    if len(data) < header or int.from_bytes(data[:4], "big") != 0x800 + dims:
        raise DataError(f"{path.name} is not an IDX file of {dims}-dimensional unsigned bytes")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    if len(data) - header != math.prod(shape):
        raise DataError(f"{path.name}: {len(data) - header} values for a shape of {shape}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _idx_split(root: Path, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    images = _read_idx(root / f"{prefix}-images-idx3-ubyte.gz", 3)
    labels = _read_idx(root / f"{prefix}-labels-idx1-ubyte.gz", 1).astype(np.int64)
    if len(images) != len(labels):
        raise DataError(f"{prefix}: {len(images)} images but {len(labels)} labels")
    return images[:, None], labels


def idx_gz(extracted: Path | None) -> ImageArrays:
    """MNIST, Fashion-MNIST or KMNIST from the directory of their four IDX files."""
    root = _extracted(extracted)
    return ImageArrays(*_idx_split(root, "train"), *_idx_split(root, "t10k"))


def _svhn_split(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One SVHN file: ``X`` uint8 (H, W, C, N), ``y`` (N, 1) with 10 for the digit 0."""
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    if not path.is_file():
        raise DataError(f"the download has no {path.name}")
    try:
        mat = loadmat(path)
    except MatReadError as error:
        raise DataError(f"{path.name} is not a MATLAB file: {error}") from error
    if "X" not in mat or "y" not in mat:
        raise DataError(f"{path.name} lacks 'X' or 'y'")
    images, labels = mat["X"], mat["y"].reshape(-1).astype(np.int64) % 10
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != len(labels):
        raise DataError(f"{path.name}: X is {images.dtype} {images.shape} for {len(labels)} labels")
    return np.ascontiguousarray(images.transpose(3, 2, 0, 1)), labels


def svhn(extracted: Path | None) -> ImageArrays:
    """SVHN (cropped digits, without the extra set) from its two ``.mat`` files."""
    root = _extracted(extracted)
    return ImageArrays(
        *_svhn_split(root / "train_32x32.mat"), *_svhn_split(root / "test_32x32.mat")
    )


STL10_SIDE = 96


def _stl10_split(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """One labelled STL-10 split: ``{split}_X.bin``, uint8 images as C planes each stored
    column by column; ``{split}_y.bin``, labels 1..10."""
    data, label_file = root / f"{split}_X.bin", root / f"{split}_y.bin"
    for path in (data, label_file):
        if not path.is_file():
            raise DataError(f"the archive has no {path.parent.name}/{path.name}")
    pixels = np.fromfile(data, dtype=np.uint8)
    labels = np.fromfile(label_file, dtype=np.uint8).astype(np.int64) - 1
    size = 3 * STL10_SIDE * STL10_SIDE
    if pixels.size != len(labels) * size:
        raise DataError(f"{data.name}: {pixels.size} bytes for {len(labels)} images of {size}")
    images = pixels.reshape(len(labels), 3, STL10_SIDE, STL10_SIDE).transpose(0, 1, 3, 2)
    return np.ascontiguousarray(images), labels


def stl10(extracted: Path | None) -> ImageArrays:
    """STL-10's labelled train and test splits from the extracted ``stl10_binary.tar.gz``."""
    root = _extracted(extracted) / "stl10_binary"
    return ImageArrays(*_stl10_split(root, "train"), *_stl10_split(root, "test"))


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
