"""The datasets the pipeline knows: name -> :class:`DatasetSpec`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from infoopt.data import sources
from infoopt.data.arrays import ImageArrays


@dataclass(frozen=True)
class DatasetSpec:
    """What a dataset is and how to get it.

    ``train_size`` (training images) sizes cluster time limits before any data exists.
    ``url``/``md5``/``archive`` (the archive's local file name) are None for a dataset
    bundled with a package; ``convert`` turns the extracted archive's directory (None
    when bundled) into arrays.
    """

    name: str
    num_classes: int
    in_channels: int
    image_size: int
    train_size: int
    url: str | None
    md5: str | None
    archive: str | None
    convert: Callable[[Path | None], ImageArrays]

    @property
    def model_shape(self) -> dict[str, int]:
        """The keyword arguments a model factory takes from its dataset."""
        return {
            "num_classes": self.num_classes,
            "in_channels": self.in_channels,
            "image_size": self.image_size,
        }

    @property
    def bundled(self) -> bool:
        return self.url is None


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            name="cifar10",
            num_classes=10,
            in_channels=3,
            image_size=32,
            train_size=50_000,
            url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
            md5="c58f30108f718f92721af3b95e74349a",
            archive="cifar-10-python.tar.gz",
            convert=sources.cifar10,
        ),
        DatasetSpec(
            name="cifar100",
            num_classes=100,
            in_channels=3,
            image_size=32,
            train_size=50_000,
            url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
            md5="eb9058c3a382ffc7106e4002c42a8d85",
            archive="cifar-100-python.tar.gz",
            convert=sources.cifar100,
        ),
        DatasetSpec(
            name="digits",
            num_classes=10,
            in_channels=1,
            image_size=8,
            train_size=1437,
            url=None,
            md5=None,
            archive=None,
            convert=sources.digits,
        ),
    )
}


def get_spec(name: str) -> DatasetSpec:
    """The spec of dataset ``name``; an unknown name lists the valid ones."""
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; valid: {', '.join(DATASETS)}") from None
