"""Fetch a dataset archive and verify its md5; only a verified archive gets its final name."""

from __future__ import annotations

import http.client
import logging
import os
import re
import uuid
from pathlib import Path

from infoopt.data.errors import DataError
from infoopt.data.registry import DatasetSpec, get_spec

log = logging.getLogger(__name__)


def source(spec: DatasetSpec, url: str | None, md5: str | None) -> tuple[str, str | None]:
    """The URL and (lower-case) md5 to use: the given ones, else the registry's. For a dataset
    of several files the URL is their base and there is no md5 (each file has its own)."""
    if spec.bundled:
        raise ValueError(f"{spec.name} is bundled: it has no URL or md5")
    if spec.files:
        if md5 is not None:
            raise ValueError(
                f"{spec.name} is {len(spec.files)} files, each checked against its known md5; "
                "give only a url, the base URL they are under"
            )
        return url or spec.url, None
    md5 = (md5 or spec.md5).lower()
    if not re.fullmatch(r"[0-9a-f]{32}", md5):
        raise ValueError(f"md5 {md5!r} is not 32 hexadecimal digits")
    return url or spec.url, md5


def download(
    name: str, raw_dir: str | os.PathLike, url: str | None = None, md5: str | None = None
) -> Path:
    """The path of dataset ``name``'s verified archive in ``raw_dir``, downloaded if needed
    (for a dataset of several files, ``raw_dir``, with each of them verified in it).

    An archive already there with the right md5 is kept (no network). A download goes to
    a hidden partial file, renamed into place only once its md5 matches; on any failure
    it is removed and a :class:`DataError` names the URL and the file (and, for a
    checksum mismatch, the expected and actual md5). A bundled dataset downloads
    nothing and ``raw_dir`` is returned.
    """
    spec = get_spec(name)
    raw_dir = Path(raw_dir)
    if spec.bundled:
        if url is not None or md5 is not None:
            raise ValueError(f"{name} is bundled and downloads nothing; it takes no url or md5")
        return raw_dir
    url, md5 = source(spec, url, md5)
    if spec.files:
        for (file_name, file_md5), file_url in zip(spec.files, spec.file_urls(url), strict=True):
            _fetch(name, file_url, file_md5, raw_dir / file_name)
        return raw_dir
    _fetch(name, url, md5, raw_dir / spec.archive)
    return raw_dir / spec.archive


def _fetch(name: str, url: str, md5: str, archive: Path) -> None:
    """Make ``archive`` the verified download of ``url`` (see :func:`download`)."""
    # Imported here, not at module level: the workflow reads the registry at every start-up,
    # and torchvision's import alone costs it more than a second.
    from torchvision.datasets.utils import calculate_md5, check_integrity, download_url

    raw_dir = archive.parent
    if check_integrity(archive, md5):
        log.info("%s: %s is present with md5 %s; not downloading", name, archive, md5)
        return
    if archive.exists():
        log.info("%s: removing %s, whose md5 is not %s", name, archive, md5)
        archive.unlink()

    raw_dir.mkdir(parents=True, exist_ok=True)
    partial = raw_dir / f".{archive.name}.part-{uuid.uuid4().hex[:12]}"
    log.info("%s: downloading %s -> %s", name, url, archive)
    try:
        try:
            download_url(url, str(raw_dir), filename=partial.name)
        except (OSError, http.client.HTTPException, ValueError) as error:
            # URLError and HTTPError are OSErrors; a malformed URL is a ValueError.
            raise DataError(f"{name}: could not download {url} to {archive}: {error}") from error
        actual = calculate_md5(partial)
        if actual != md5:
            raise DataError(
                f"{name}: checksum mismatch for {archive} downloaded from {url}: "
                f"expected md5 {md5}, got {actual}; the download was discarded"
            )
        os.replace(partial, archive)
    finally:
        partial.unlink(missing_ok=True)
    log.info("%s: %s verified (md5 %s)", name, archive, md5)
