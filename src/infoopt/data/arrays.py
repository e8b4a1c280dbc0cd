"""The array file format of a prepared dataset (``resources/data/{dataset}.npz``).

An uncompressed ``.npz`` (loads with ``np.load`` at disk speed, no pickle) holding
``x_train``/``x_test`` uint8 (N, C, H, W), ``y_train``/``y_test`` int64 (N,), the
per-channel ``mean``/``std`` (float32) of the training images scaled to [0, 1],
``num_classes`` (int64 scalar) and ``digest``, the content digest of all the others
(:func:`infoopt.digest.value_digest`). Reading verifies it, so a damaged or edited file is
named before any result is computed from it, and results are keyed by it (:mod:`infoopt.store`).
"""

from __future__ import annotations

import contextlib
import os
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from infoopt.atomic import atomic_path
from infoopt.data.errors import DataError
from infoopt.digest import value_digest

CONTENT = ("x_train", "y_train", "x_test", "y_test", "mean", "std", "num_classes")
KEYS = (*CONTENT, "digest")
_REDO = "delete it and run `infoopt prepare` (or the workflow) to write it again"


@dataclass(frozen=True)
class ImageArrays:
    """A train/test split of images (uint8, N×C×H×W) and integer labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if x.dtype != np.uint8 or x.ndim != 4:
                raise DataError(f"x_{split} must be uint8 (N, C, H, W), got {x.dtype} {x.shape}")
            if y.dtype != np.int64 or y.shape != (len(x),):
                raise DataError(f"y_{split} must be int64 ({len(x)},), got {y.dtype} {y.shape}")
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise DataError(
                f"train images are {self.x_train.shape[1:]} but test images {self.x_test.shape[1:]}"
            )
        if len(self.x_train) == 0:
            raise DataError("the training split is empty")


def channel_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact per-channel mean and (population) std of uint8 images scaled to [0, 1].

    Computed from each channel's 256-bin histogram, so a 50 000-image set needs no
    float copy of the data.
    """
    levels = np.arange(256, dtype=np.float64) / 255.0
    mean = np.empty(x.shape[1], dtype=np.float64)
    std = np.empty(x.shape[1], dtype=np.float64)
    for channel in range(x.shape[1]):
        counts = np.bincount(x[:, channel].ravel(), minlength=256).astype(np.float64)
        total = counts.sum()
        mean[channel] = counts @ levels / total
        std[channel] = np.sqrt(counts @ (levels - mean[channel]) ** 2 / total)
    return mean.astype(np.float32), std.astype(np.float32)


def write_arrays(path: str | os.PathLike, arrays: ImageArrays, num_classes: int) -> None:
    """Write ``arrays`` and their normalisation statistics atomically to ``path``."""
    for split, y in (("train", arrays.y_train), ("test", arrays.y_test)):
        if len(y) and (y.min() < 0 or y.max() >= num_classes):
            raise DataError(f"y_{split} has labels outside 0..{num_classes - 1}")
    mean, std = channel_stats(arrays.x_train)
    content = {
        "x_train": np.ascontiguousarray(arrays.x_train),
        "y_train": arrays.y_train,
        "x_test": np.ascontiguousarray(arrays.x_test),
        "y_test": arrays.y_test,
        "mean": mean,
        "std": std,
        "num_classes": np.int64(num_classes),
    }
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        # A file handle, not a name: np.savez would append ".npz" to the temporary name.
        np.savez(handle, **content, digest=np.str_(value_digest(content)))


@contextlib.contextmanager
def _open(path: Path) -> Iterator[np.lib.npyio.NpzFile]:
    # Our own handle: np.load leaves its file open when a damaged archive fails to parse.
    with open(path, "rb") as handle:
        npz = np.load(handle, allow_pickle=False)
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise ValueError("a single array, not an .npz archive")
        with npz:
            yield npz


def read_arrays(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read and check an array file; every key of ``KEYS`` is in the result."""
    path = Path(path)
    try:
        with _open(path) as npz:
            missing = [key for key in KEYS if key not in npz.files]
            if missing:
                raise DataError(f"array file {path} lacks {missing}; {_REDO}")
            data = {key: npz[key] for key in KEYS}
    except FileNotFoundError as error:
        raise DataError(f"array file {path} does not exist; run `infoopt prepare`") from error
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
        raise DataError(f"array file {path} is corrupt ({error}); {_REDO}") from error
    if str(data["digest"]) != value_digest({key: data[key] for key in CONTENT}):
        raise DataError(
            f"array file {path} is corrupt (content does not match its digest); {_REDO}"
        )
    ImageArrays(data["x_train"], data["y_train"], data["x_test"], data["y_test"])
    channels = data["x_train"].shape[1]
    for key in ("mean", "std"):
        if data[key].dtype != np.float32 or data[key].shape != (channels,):
            raise DataError(f"array file {path}: {key} must be float32 ({channels},)")
    return data


def array_digest(path: str | os.PathLike) -> str:
    """The verified content digest of an array file (a DataError names a damaged one)."""
    return str(read_arrays(path)["digest"])


def is_array_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a complete array file (checks its index, not the arrays)."""
    try:
        with _open(Path(path)) as npz:
            return all(key in npz.files for key in KEYS)
    except (OSError, ValueError, zipfile.BadZipFile):
        return False
