"""Which device a job runs on: one GPU per concurrent job on a multi-GPU workstation.

Snakemake's ``--resources gpu=N`` bounds how many GPU jobs run at once but assigns no
device ids, so every job would pick ``cuda:0``. :func:`acquire_device` gives each job a
GPU of its own by holding an OS-level lock file per GPU (``gpu<id>.lock``) for as long as
the job runs. The kernel drops the lock when the process dies, even by SIGKILL, so a
killed job never keeps its GPU reserved.

The lock directory defaults to ``$INFOOPT_GPU_LOCK_DIR`` or a per-user directory in the
system temp dir, not the repository: GPUs belong to the machine, so every checkout and
workflow directory must see the same locks, and ``flock`` needs a local file system
(a repository on NFS may not provide it). Per user, because a directory created by
another user would not be writable; users who share GPUs can point
``INFOOPT_GPU_LOCK_DIR`` at one common directory.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import time
from pathlib import Path
from types import TracebackType

import torch
from filelock import FileLock, Timeout

LOCK_DIR_ENV = "INFOOPT_GPU_LOCK_DIR"

log = logging.getLogger(__name__)


class DeviceLease:
    """A device for this process and, for an auto-picked GPU, the lock that reserves it.

    Keep the lease referenced while the device is in use: the lock is released by
    :meth:`release`, on leaving a ``with`` block, when the lease is garbage collected,
    or when the process ends.
    """

    def __init__(self, device: torch.device, lock: FileLock | None = None) -> None:
        self.device = device
        self._lock = lock

    @property
    def lock_path(self) -> Path | None:
        """The lock file held for the device, or None when nothing was locked."""
        return None if self._lock is None else Path(self._lock.lock_file)

    def release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> DeviceLease:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"DeviceLease(device={self.device}, lock_path={self.lock_path})"


def default_lock_dir() -> Path:
    """``$INFOOPT_GPU_LOCK_DIR``, else ``<system temp dir>/infoopt-gpu-locks-<uid>``."""
    configured = os.environ.get(LOCK_DIR_ENV)
    if configured:
        return Path(configured)
    return Path(tempfile.gettempdir()) / f"infoopt-gpu-locks-{os.getuid()}"


def acquire_device(
    preferred: str | None = None,
    lock_dir: Path | None = None,
    *,
    poll_seconds: float = 0.5,
    max_poll_seconds: float = 10.0,
    log_every_seconds: float = 300.0,
) -> DeviceLease:
    """Pick this process's device.

    ``preferred`` is ``None`` or ``"auto"`` (a free GPU if CUDA is available, else the
    CPU), ``"cuda"`` (a free GPU; CUDA required), or an explicit device such as ``"cpu"``
    or ``"cuda:1"``, which is used as given, without locking. When
    ``CUDA_VISIBLE_DEVICES`` pins exactly one GPU (as Slurm does for a one-GPU job), that
    GPU is the job's own and is used without locking. Otherwise the first GPU whose lock
    is free is taken; while all are taken, this waits, polling with a backoff from
    ``poll_seconds`` up to ``max_poll_seconds`` and logging every ``log_every_seconds``.
    """
    choice = "auto" if preferred is None else preferred.strip().lower()
    if choice not in ("auto", "cuda"):
        return DeviceLease(_explicit_device(choice))
    if not torch.cuda.is_available():
        if choice == "cuda":
            raise RuntimeError("device 'cuda' requested, but CUDA is not available here")
        return DeviceLease(torch.device("cpu"))
    visible = _visible_devices()
    if visible is not None and len(visible) == 1:
        return DeviceLease(torch.device("cuda", 0))
    gpu_ids = _gpu_ids(visible, torch.cuda.device_count())
    if not gpu_ids:
        raise RuntimeError(f"CUDA is available but CUDA_VISIBLE_DEVICES={visible} names no GPU")
    return _wait_for_free_gpu(
        gpu_ids,
        default_lock_dir() if lock_dir is None else Path(lock_dir),
        poll_seconds,
        max_poll_seconds,
        log_every_seconds,
    )


def _explicit_device(choice: str) -> torch.device:
    try:
        device = torch.device(choice)
    except RuntimeError as error:
        raise ValueError(
            f"unknown device {choice!r}; use 'auto', 'cpu', 'cuda' or 'cuda:<index>'"
        ) from error
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if device.index is not None and device.index >= count:
            valid = ", ".join(f"cuda:{i}" for i in range(count)) or "none: CUDA is not available"
            raise ValueError(f"device {choice!r} does not exist; GPUs here: {valid}")
    return device


def _visible_devices() -> list[str] | None:
    """The entries of ``CUDA_VISIBLE_DEVICES``, or None when it is unset."""
    value = os.environ.get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return None
    return [entry.strip() for entry in value.split(",") if entry.strip()]


def _gpu_ids(visible: list[str] | None, count: int) -> list[str]:
    """A machine-wide name for each visible GPU, in CUDA index order.

    Under ``CUDA_VISIBLE_DEVICES=2,5`` the process's ``cuda:0`` is GPU 2: naming the locks
    by the physical id keeps jobs with different visible sets from sharing a GPU.
    """
    if visible is None:
        return [str(index) for index in range(count)]
    return [re.sub(r"[^A-Za-z0-9_.-]", "_", entry) for entry in visible[:count]]


def _wait_for_free_gpu(
    gpu_ids: list[str],
    lock_dir: Path,
    poll_seconds: float,
    max_poll_seconds: float,
    log_every_seconds: float,
) -> DeviceLease:
    lock_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    locks = [FileLock(lock_dir / f"gpu{gpu_id}.lock", thread_local=False) for gpu_id in gpu_ids]
    delay = poll_seconds
    started = time.monotonic()
    next_log = started
    while True:
        for index, lock in enumerate(locks):
            try:
                lock.acquire(timeout=0)
            except Timeout:
                continue
            log.info("using cuda:%d (lock %s)", index, lock.lock_file)
            return DeviceLease(torch.device("cuda", index), lock)
        now = time.monotonic()
        if now >= next_log:
            log.info(
                "all %d GPUs are taken by other jobs (locks in %s); waited %.0f s so far",
                len(locks),
                lock_dir,
                now - started,
            )
            next_log = now + log_every_seconds
        time.sleep(delay)
        delay = min(2 * delay, max_poll_seconds)
