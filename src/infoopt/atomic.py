"""Atomic file outputs: write to a temporary sibling, then rename.

A job killed half-way leaves at most a ``*.tmp-*`` file behind, never a file
that looks complete to Snakemake or to a resuming run.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    # mkstemp creates the file private (0600); give it the permissions of an ordinary new file.
    tmp.chmod(0o666 & ~_umask())
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_torch(obj: Any, path: str | os.PathLike) -> None:
    # Imported here: the notebooks write tables with this module and need no torch (~1 s).
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def write_json(obj: Any, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_text(text: str, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_table(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write a table as parquet or CSV, chosen by the file's suffix."""
    path = Path(path)
    with atomic_path(path) as tmp:
        if path.suffix == ".parquet":
            df.to_parquet(tmp, index=False)
        elif path.suffix == ".csv":
            df.to_csv(tmp, index=False)
        else:
            raise ValueError(
                f"{path}: unsupported table format {path.suffix!r} (use .parquet or .csv)"
            )


def publish(source: str | os.PathLike, target: str | os.PathLike, link: bool = True) -> None:
    """Atomically place a copy of ``source`` at ``target``, keeping ``source``.

    A hard link where the file system allows it and ``link`` is set (no copy of the bytes),
    else a copy with the permissions of a new file. ``source`` stays, so a job killed between
    two publishes loses nothing.
    """
    with atomic_path(target) as tmp:
        if link:
            tmp.unlink()
            try:
                os.link(source, tmp)
            except OSError:
                shutil.copyfile(source, tmp)
        else:
            shutil.copyfile(source, tmp)
