"""A content-addressed store of the expensive results: training runs, sweep runs, Hessian tables.

A result is filed under a key derived from what determines it (:func:`result_key`): the kind of
step, its canonical spec, the content digests of its inputs (initial weights, data arrays,
checkpoint) and the versions that change its numbers (``torch``, and ``NUMERICS``, which this
package bumps when a change of its own alters results). Nothing else enters the key: not the
configuration's wording, the rule's command line, file times or paths. So a job whose outputs
Snakemake deleted (a changed parameter string or command, a newer input file, an edit that was
reverted) finds its key here and completes in seconds from the stored files instead of
recomputing.

Layout under the root (``results/store`` in the working directory, or ``$INFOOPT_STORE``)::

    <kind>/<key>/            a complete entry: the result's files and entry.json (its record)
    <kind>/<key>.partial/    the state of a job that is running or was killed (it resumes it)
    <kind>/<key>.lock        held by the job computing <key>

An entry appears by one rename once all its files and its record are written, so a killed job
never leaves an entry that looks complete. Restoring checks each file's SHA-256 against the
record and places copies at the destination, with the time of the restore, so that Snakemake
sees them as new. Copies, not hard links: an output edited in place must not change the stored
result, and Snakemake refuses to replace read-only outputs, so the stored files (read-only) and
the placed ones (ordinary files) stay apart. The store thus doubles the disk use of the results
it holds; ``infoopt store prune`` removes the entries nothing uses.

A result's key leaves out the name an experiment gives its optimizer (a label, not what is
computed), so runs that differ only in that name are computed once. The files that carry the
name (a run's checkpoints and ``run.json``, a Hessian table) are placed relabelled for the
destination's name (:data:`Relabel`); the record keeps the SHA-256 of each relabelled copy
under ``relabelled`` (target path -> SHA-256), so such a copy counts as a use of the entry.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from infoopt.atomic import publish, write_json
from infoopt.digest import file_digest, value_digest

# Bump an entry when a change of this package alters that kind's results (not for refactors).
NUMERICS = {"train": 1, "hessian": 1}
RECORD = "entry.json"
DEFAULT_ROOT = "results/store"


# (file name in the entry, stored file, target): write the stored file at ``target`` relabelled
# for the destination's name and return True, or return False if it carries that name already
# (then it is copied as it is).
Relabel = Callable[[str, Path, Path], bool]


class StoreError(RuntimeError):
    """A store entry that is damaged or cannot be used."""


def numerics_versions(kind: str) -> dict[str, Any]:
    """The versions that change the numbers of a ``kind`` result."""
    import torch

    return {"torch": torch.__version__, "infoopt": NUMERICS[kind]}


def result_key(kind: str, spec: Mapping[str, Any], inputs: Mapping[str, str]) -> str:
    """The key of a ``kind`` result: its spec, its inputs' content digests and versions."""
    return value_digest(
        {"kind": kind, "spec": spec, "inputs": inputs, "versions": numerics_versions(kind)}
    )


@dataclass(frozen=True)
class Entry:
    """One complete result in the store."""

    path: Path
    record: dict[str, Any]

    @property
    def kind(self) -> str:
        return self.record["kind"]

    @property
    def key(self) -> str:
        return self.record["key"]

    @property
    def files(self) -> dict[str, dict[str, Any]]:
        return self.record["files"]

    @property
    def size(self) -> int:
        return sum(f["bytes"] for f in self.files.values())

    def in_use(self) -> bool:
        """Whether a place it was restored to still holds exactly its files."""
        return any(self._placed_at(targets) for targets in self.record["destinations"])

    def _placed_at(self, targets: Mapping[str, str]) -> bool:
        relabelled = self.record.get("relabelled", {})
        for name, target in targets.items():
            try:
                if file_digest(target) != relabelled.get(target, self.files[name]["sha256"]):
                    return False
            except FileNotFoundError:
                return False
        return True

    def verify(self) -> None:
        """A StoreError unless every file matches its recorded SHA-256."""
        for name, meta in self.files.items():
            path = self.path / name
            if not path.is_file() or file_digest(path) != meta["sha256"]:
                raise StoreError(
                    f"store entry {self.path} is damaged: {name} does not match its record; "
                    f"remove the entry (`infoopt store remove {self.key[:12]}`) to recompute it"
                )


class Store:
    """The result store at ``root``."""

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = Path(root or os.environ.get("INFOOPT_STORE") or DEFAULT_ROOT)

    def entry_path(self, kind: str, key: str) -> Path:
        return self.root / kind / key

    def partial(self, kind: str, key: str) -> Path:
        """Where the job computing (kind, key) keeps the state it resumes from."""
        return self.root / kind / f"{key}.partial"

    @contextlib.contextmanager
    def claim(self, kind: str, key: str) -> Iterator[Entry | None]:
        """Hold (kind, key) for this job; yields the complete entry, or None to compute it."""
        (self.root / kind).mkdir(parents=True, exist_ok=True)
        with FileLock(self.root / kind / f"{key}.lock"):
            yield self.get(kind, key)

    def get(self, kind: str, key: str) -> Entry | None:
        path = self.entry_path(kind, key)
        try:
            record = json.loads((path / RECORD).read_text())
        except FileNotFoundError:
            return None
        except (OSError, json.JSONDecodeError) as error:
            raise StoreError(f"store entry {path} has an unreadable record: {error}") from error
        return Entry(path, record)

    def commit(self, kind: str, key: str, source: Path, description: Mapping[str, Any]) -> Entry:
        """File every file under ``source`` as the entry (kind, key); ``source`` is consumed.

        ``description`` (the spec, the inputs, a label) goes into the entry's record.
        """
        files = {
            path.relative_to(source).as_posix(): {
                "sha256": file_digest(path),
                "bytes": path.stat().st_size,
            }
            for path in sorted(source.rglob("*"))
            if path.is_file()
        }
        record = {
            **description,
            "kind": kind,
            "key": key,
            "versions": numerics_versions(kind),
            "files": files,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "destinations": [],
        }
        for name in files:
            (source / name).chmod(0o444)
        write_json(record, source / RECORD)
        target = self.entry_path(kind, key)
        # A folder without a record is the leftover of a damaged entry.
        shutil.rmtree(target, ignore_errors=True)
        os.replace(source, target)
        shutil.rmtree(self.partial(kind, key), ignore_errors=True)
        return Entry(target, record)

    def restore(
        self,
        entry: Entry,
        targets: Mapping[str, str | os.PathLike],
        relabel: Relabel | None = None,
    ) -> None:
        """Place the entry's files (verified first) at ``targets`` (file name in the entry ->
        path), with the current time, relabelled where ``relabel`` says so, and record where."""
        entry.verify()
        relabelled = entry.record.setdefault("relabelled", {})
        for name, target in targets.items():
            if relabel is not None and relabel(name, entry.path / name, Path(target)):
                relabelled[str(target)] = file_digest(target)
            else:
                publish(entry.path / name, target, link=False)
                relabelled.pop(str(target), None)
        placed = {name: str(target) for name, target in targets.items()}
        if placed not in entry.record["destinations"]:
            entry.record["destinations"].append(placed)
        write_json(entry.record, entry.path / RECORD)

    def entries(self) -> list[Entry]:
        """Every complete entry, oldest first."""
        found = []
        for record in sorted(self.root.glob(f"*/*/{RECORD}")):
            entry = self.get(record.parent.parent.name, record.parent.name)
            if entry is not None:
                found.append(entry)
        return sorted(found, key=lambda e: e.record["created"])

    def partials(self, idle: bool = False) -> list[Path]:
        """The states of jobs that are running or were killed (``idle``: killed ones only)."""
        found = sorted(p for p in self.root.glob("*/*.partial") if p.is_dir())
        return [p for p in found if not idle or not _locked(p.with_suffix(".lock"))]

    def find(self, prefix: str) -> Entry:
        """The one entry whose key starts with ``prefix``."""
        matches = [e for e in self.entries() if e.key.startswith(prefix)]
        if len(matches) != 1:
            raise StoreError(
                f"{len(matches)} store entries have a key starting with {prefix!r}; "
                "`infoopt store list` shows them"
            )
        return matches[0]


def _locked(path: Path) -> bool:
    try:
        with FileLock(path, timeout=0):
            return False
    except Timeout:
        return True


def run_stored(
    store: Store,
    kind: str,
    key: str,
    description: Mapping[str, Any],
    compute: Callable[[Path, Path], None],
    targets: Callable[[Entry], Mapping[str, str | os.PathLike]],
    relabel: Relabel | None = None,
) -> tuple[Entry, bool]:
    """Place result (kind, key) from the store if it is there, else from
    ``compute(result_dir, state_dir)``, which writes the result's files under ``result_dir``
    and may keep the state it resumes from under ``state_dir``. ``targets(entry)`` says where
    each file goes, ``relabel`` which to relabel for the destination's name. Returns (entry,
    whether it was restored)."""
    with store.claim(kind, key) as entry:
        restored = entry is not None
        if entry is None:
            partial = store.partial(kind, key)
            result = partial / "result"
            shutil.rmtree(result, ignore_errors=True)
            compute(result, partial / "state")
            entry = store.commit(kind, key, result, description)
        store.restore(entry, targets(entry), relabel)
    return entry, restored
