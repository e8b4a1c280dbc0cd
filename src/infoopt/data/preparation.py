"""Download (if needed), extract and convert a dataset, once, into its array file."""

from __future__ import annotations

import gzip
import logging
import os
import pickle
import tarfile
import tempfile
import zlib
from pathlib import Path

from infoopt.data.arrays import ImageArrays, is_array_file, write_arrays
from infoopt.data.download import download, source
from infoopt.data.errors import DataError
from infoopt.data.registry import DatasetSpec, get_spec

log = logging.getLogger(__name__)

# What a damaged or wrong archive raises while it is extracted or its batches unpickled
# (not OSError at large: a full disk must not cost a good archive).
_UNREADABLE = (
    tarfile.TarError,
    gzip.BadGzipFile,
    EOFError,
    zlib.error,
    pickle.UnpicklingError,
    ValueError,
    TypeError,
    DataError,
)


def _convert_archive(spec: DatasetSpec, archive: Path, url: str) -> ImageArrays:
    from torchvision.datasets.utils import calculate_md5, extract_archive  # slow: see download()

    # Extract into a temporary directory: a half-extracted tree never lies around.
    with tempfile.TemporaryDirectory(prefix=".extract-", dir=archive.parent) as extracted:
        try:
            extract_archive(str(archive), extracted)
            return spec.convert(Path(extracted))
        except _UNREADABLE as error:
            actual = calculate_md5(archive)
            archive.unlink()
            raise DataError(
                f"{spec.name}: archive {archive} (md5 {actual}, from {url}) is corrupt or not "
                f"{spec.name}: {error}; the archive was removed"
            ) from error


def _convert_files(spec: DatasetSpec, directory: Path, url: str) -> ImageArrays:
    """Convert a dataset of several verified files, read where they are."""
    try:
        return spec.convert(directory)
    except _UNREADABLE as error:
        for file_name, _ in spec.files:
            (directory / file_name).unlink(missing_ok=True)
        raise DataError(
            f"{spec.name}: the files in {directory} (from {url}) are corrupt or not "
            f"{spec.name}: {error}; they were removed"
        ) from error


def prepare(
    name: str,
    raw_dir: str | os.PathLike,
    out_path: str | os.PathLike,
    url: str | None = None,
    md5: str | None = None,
) -> Path:
    """Write dataset ``name``'s array file to ``out_path`` unless a complete one is there.

    Downloads the archive into ``raw_dir`` only if no verified copy is there; the
    archive is kept, so converting again needs no network.
    """
    spec = get_spec(name)
    out_path = Path(out_path)
    if is_array_file(out_path):
        log.info("%s: %s is already prepared", name, out_path)
        return out_path
    archive = download(name, raw_dir, url, md5)
    if spec.bundled:
        arrays = spec.convert(None)
    elif spec.files:
        log.info("%s: converting the files in %s", name, archive)
        arrays = _convert_files(spec, archive, source(spec, url, md5)[0])
    else:
        log.info("%s: converting %s", name, archive)
        arrays = _convert_archive(spec, archive, source(spec, url, md5)[0])
    shape = arrays.x_train.shape[1:]
    expected = (spec.in_channels, spec.image_size, spec.image_size)
    if shape != expected:
        raise DataError(f"{name}: images are {shape}, the registry says {expected}")
    write_arrays(out_path, arrays, spec.num_classes)
    log.info("%s: wrote %s", name, out_path)
    return out_path
