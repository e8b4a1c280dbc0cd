"""The datasets the pipeline knows: name -> :class:`DatasetSpec`."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from infoopt.data import sources
from infoopt.data.arrays import ImageArrays
from infoopt.data.folder import read_image_folder


@dataclass(frozen=True)
class DatasetSpec:
    """What a dataset is and how to get it.

    ``train_size`` (training images) sizes cluster time limits before any data exists.
    ``url``/``md5``/``archive`` (the archive's local file name) are None for a dataset
    bundled with a package; ``convert`` turns the extracted archive's directory (None
    when bundled) into arrays. A dataset that comes as several files (MNIST's four) has
    ``files``, each ``(file name, md5)``, under the base URL ``url`` (no ``md5`` or
    ``archive``): they are not extracted, ``convert`` reads the directory they are in.
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
    files: tuple[tuple[str, str], ...] = ()

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

    def file_urls(self, url: str | None = None) -> list[str]:
        """The URLs it is downloaded from: the archive's, or each file's under the base URL
        (``url`` in place of the registry's, if given)."""
        base = url or self.url
        if base is None:
            return []
        if not self.files:
            return [base]
        return [f"{base.rstrip('/')}/{name}" for name, _ in self.files]


# The four gzipped IDX files of MNIST and the sets in its format.
def _idx_files(*md5s: str) -> tuple[tuple[str, str], ...]:
    names = [
        f"{split}-{kind}-idx{dims}-ubyte.gz"
        for split in ("train", "t10k")
        for kind, dims in (("images", 3), ("labels", 1))
    ]
    return tuple(zip(names, md5s, strict=True))


def _idx_set(name: str, url: str, files: tuple[tuple[str, str], ...]) -> DatasetSpec:
    return DatasetSpec(
        name=name,
        num_classes=10,
        in_channels=1,
        image_size=28,
        train_size=60_000,
        url=url,
        md5=None,
        archive=None,
        convert=sources.idx_gz,
        files=files,
    )


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
        _idx_set(
            "mnist",
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            _idx_files(
                "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                "d53e105ee54ea40749a09fcbcd1e9432",
                "9fb629c4189551a2d022fa330f9573f3",
                "ec29112dd5afa0611ce80d1b7f02629c",
            ),
        ),
        _idx_set(
            "fashion_mnist",
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            _idx_files(
                "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                "25c81989df183df01b3e8a0aad5dffbe",
                "bef4ecab320f06d8554ea6380940ec79",
                "bb300cfdad3c16e7a12a480ee83cd310",
            ),
        ),
        _idx_set(
            "kmnist",
            "http://codh.rois.ac.jp/kmnist/dataset/kmnist/",
            _idx_files(
                "bdb82020997e1d708af4cf47b453dcf7",
                "e144d726b3acfaa3e44228e80efcd344",
                "5c965bf0a639b31b8f53240b1b52f4d7",
                "7320c461ea6c1c855c0b718fb2a4b134",
            ),
        ),
        DatasetSpec(
            name="svhn",
            num_classes=10,
            in_channels=3,
            image_size=32,
            train_size=73_257,
            url="http://ufldl.stanford.edu/housenumbers/",
            md5=None,
            archive=None,
            convert=sources.svhn,
            files=(
                ("train_32x32.mat", "e26dedcc434d2e4c54c9b2d4a06d8373"),
                ("test_32x32.mat", "eb5a983be6a315427106f1b164d9cef3"),
            ),
        ),
        DatasetSpec(
            name="stl10",
            num_classes=10,
            in_channels=3,
            image_size=96,
            train_size=5_000,
            url="http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz",
            md5="91f7769df0f17e558f3565bffb0c7dfb",
            archive="stl10_binary.tar.gz",
            convert=sources.stl10,
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


def _read_folder_at(
    path: Path, classes: list[str], image_size: int, channels: int, extracted: Path | None
) -> ImageArrays:
    """An image folder at a local ``path`` (``extracted`` is None: nothing was downloaded): a
    directory, or an archive extracted into a temporary directory first."""
    from torchvision.datasets.utils import extract_archive  # slow: see download()

    if path.is_dir():
        return read_image_folder(path, classes, image_size, channels)
    with tempfile.TemporaryDirectory(prefix=".extract-") as directory:
        extract_archive(str(path), directory)
        return read_image_folder(Path(directory), classes, image_size, channels)


def image_folder_spec(name: str, settings: dict[str, Any]) -> DatasetSpec:
    """The spec of a user's image folder (:mod:`infoopt.data.folder`), from its settings in
    the configuration's ``datasets`` section: ``classes``, ``image_size``, ``channels`` and
    either a local ``path`` (nothing to download) or a ``url`` and ``md5`` of an archive."""
    classes, size, channels = (
        settings["classes"],
        settings["image_size"],
        settings.get("channels", 3),
    )
    shape = {"num_classes": len(classes), "in_channels": channels, "image_size": size}
    read = partial(read_image_folder, classes=classes, image_size=size, channels=channels)
    if "path" in settings:
        path = Path(settings["path"])
        train = path / "train"
        count = sum(1 for f in train.rglob("*") if f.is_file()) if train.is_dir() else 0
        return DatasetSpec(
            name=name,
            **shape,
            train_size=count,
            url=None,
            md5=None,
            archive=None,
            convert=partial(_read_folder_at, path, classes, size, channels),
        )
    url = settings["url"]
    return DatasetSpec(
        name=name,
        **shape,
        train_size=0,
        url=url,
        md5=settings["md5"],
        archive=url.rstrip("/").rsplit("/", 1)[-1],
        convert=read,
    )


# The datasets of the package, which an image folder may not be named as.
KNOWN = frozenset(DATASETS)


def register_image_folders(datasets: dict[str, dict[str, Any]]) -> None:
    """Add the image folders among a configuration's ``datasets`` to :data:`DATASETS`."""
    for name, settings in datasets.items():
        if "classes" in settings:
            if name in KNOWN:
                raise ValueError(f"{name} is a known dataset; name the image folder otherwise")
            DATASETS[name] = image_folder_spec(name, settings)
