"""A user's own images as a dataset: ``train/<class>/*`` and ``test/<class>/*``.

The layout is a directory, or a ``.zip`` or ``.tar`` (``.tar.gz``...) holding one (at its top
or inside one top-level directory). Images are PNG or JPEG (whatever Pillow reads), converted
to the configured channels (1: grey, 3: RGB) and resized to ``image_size`` x ``image_size``.
The classes are the configuration's list, in its order (label ``i`` is ``classes[i]``): both
splits must have exactly those class directories, none empty, and every file in them must be
an image, or a :class:`DataError` names what is wrong before any training.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from infoopt.data.arrays import ImageArrays
from infoopt.data.errors import DataError

SPLITS = ("train", "test")


def _root(extracted: Path) -> Path:
    """The directory holding ``train/`` and ``test/``: ``extracted`` or its one subdirectory."""
    if (extracted / "train").is_dir():
        return extracted
    children = [child for child in extracted.iterdir() if not child.name.startswith(".")]
    if len(children) == 1 and (children[0] / "train").is_dir():
        return children[0]
    raise DataError(f"{extracted} has no train/ and test/ directories of class directories")


def _visible(directory: Path) -> list[Path]:
    return sorted(path for path in directory.iterdir() if not path.name.startswith("."))


def _read_image(path: Path, channels: int, image_size: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image = image.convert("L" if channels == 1 else "RGB")
            image = image.resize((image_size, image_size), Image.Resampling.BILINEAR)
            pixels = np.asarray(image, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise DataError(f"{path} is not an image Pillow can read: {error}") from error
    return pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)


def read_image_folder(
    extracted: Path, classes: list[str], image_size: int, channels: int
) -> ImageArrays:
    """The images under ``extracted`` (see the module's doc) as arrays."""
    root = _root(Path(extracted))
    arrays = []
    for split in SPLITS:
        directory = root / split
        if not directory.is_dir():
            raise DataError(f"{root} has no {split}/ directory")
        found = [path.name for path in _visible(directory) if path.is_dir()]
        missing, extra = sorted(set(classes) - set(found)), sorted(set(found) - set(classes))
        if missing or extra:
            raise DataError(
                f"{directory}: the class directories are not the configured classes "
                f"{classes} (missing: {missing}, not configured: {extra})"
            )
        images, labels = [], []
        for label, name in enumerate(classes):
            files = [path for path in _visible(directory / name) if path.is_file()]
            if not files:
                raise DataError(f"{directory / name}: class {name!r} has no images")
            images += [_read_image(path, channels, image_size) for path in files]
            labels += [label] * len(files)
        arrays += [np.stack(images), np.asarray(labels, dtype=np.int64)]
    return ImageArrays(*arrays)
