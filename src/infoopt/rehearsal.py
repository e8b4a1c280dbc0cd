"""The dress rehearsal: the paper's workflow at full model size on a small CIFAR-10-format archive.

``python -m infoopt.rehearsal [SNAKEMAKE ARGS]`` (or ``./run rehearsal``), from a workflow
directory: writes a CIFAR-10-format archive of a few hundred seeded images, serves it on
127.0.0.1, and runs Snakemake with ``workflow/profiles/rehearsal``, whose configuration is the
paper's with every size that is not the models' cut down (see its experiment.yaml). The archive
goes through the real download path (HTTP, MD5 check, extraction, conversion), so what would
crash hours into a real run crashes here, in minutes, on a CPU.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import pickle
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from infoopt.data import DATASETS

PROFILE = "workflow/profiles/rehearsal"
ARCHIVE_DIR = Path("resources/rehearsal")
# Five training batches and a test batch, as in the real archive.
TRAIN_PER_BATCH = 24
TEST_SIZE = 96
SEED = 0


def _images(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    """Noise around a per-class colour, so that a few steps learn something: uint8 (n, 3072),
    each row the red plane, then green, then blue (CIFAR's layout)."""
    colours = np.random.default_rng(SEED).uniform(64, 192, size=(10, 3, 1, 1))
    noise = rng.normal(0, 48, size=(len(labels), 3, 32, 32))
    return np.clip(colours[labels] + noise, 0, 255).astype(np.uint8).reshape(len(labels), -1)


def _batch(rng: np.random.Generator, size: int, name: str) -> bytes:
    labels = np.arange(size) % 10
    rng.shuffle(labels)
    batch = {b"batch_label": name.encode(), b"labels": labels.tolist()}
    batch[b"data"] = _images(rng, labels)
    return pickle.dumps(batch, protocol=2)


def write_cifar10_archive(directory: Path) -> tuple[Path, str]:
    """The archive, under CIFAR-10's file name in ``directory``, and its MD5."""
    rng = np.random.default_rng(SEED)
    members = {
        f"data_batch_{i}": _batch(rng, TRAIN_PER_BATCH, f"training batch {i} of 5")
        for i in range(1, 6)
    }
    members["test_batch"] = _batch(rng, TEST_SIZE, "testing batch 1 of 1")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / DATASETS["cifar10"].archive
    path.write_bytes(buffer.getvalue())
    return path, hashlib.md5(buffer.getvalue()).hexdigest()


@contextmanager
def serve(directory: Path) -> Iterator[str]:
    """An HTTP server for ``directory`` on a free port of 127.0.0.1; yields its base URL."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(directory))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}"
        finally:
            server.shutdown()


def precision() -> str:
    """The profile's bf16 where this CPU computes bf16 natively (AVX-512 BF16 or AMX), else
    float32: emulated bf16 makes a full-size training step about ten times slower (63 s against
    6 s for a ResNet18 step at batch 48 on an AVX2 CPU), and the bf16 path of the full-size
    models is then checked by tests/test_execution.py instead, one step at batch 2."""
    import torch

    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return "bf16" if native else "fp32"


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    archive, md5 = write_cifar10_archive(ARCHIVE_DIR)
    with serve(archive.parent) as url:
        source = f"datasets={{cifar10: {{url: {url}/{archive.name}, md5: {md5}}}}}"
        command = [sys.executable, "-m", "snakemake", "--workflow-profile", PROFILE]
        training = f"training={{precision: {precision()}}}"
        return subprocess.run([*command, "--config", source, training, *arguments]).returncode


if __name__ == "__main__":
    sys.exit(main())
