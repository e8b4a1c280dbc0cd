"""GPU leases: jobs get distinct GPUs, wait while all are taken; a killed job frees its GPU.

The GPU count is faked by patching ``torch.cuda``; the locks are real files.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import torch

from infoopt.devices import LOCK_DIR_ENV, acquire_device, default_lock_dir

FAST = {"poll_seconds": 0.01, "max_poll_seconds": 0.05}


@pytest.fixture
def fake_gpus(monkeypatch):
    """Call with n to make torch report n CUDA devices (0: a CPU-only machine)."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv(LOCK_DIR_ENV, raising=False)

    def set_count(n: int) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)

    return set_count


def wait_until(condition, what: str, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.01)


@pytest.mark.parametrize("preferred", [None, "auto"])
def test_cpu_only_machine_gets_cpu_without_locking(fake_gpus, tmp_path, preferred):
    fake_gpus(0)
    lease = acquire_device(preferred, lock_dir=tmp_path / "locks")
    assert lease.device == torch.device("cpu")
    assert lease.lock_path is None
    assert not (tmp_path / "locks").exists()


def test_concurrent_holders_get_different_gpus(fake_gpus, tmp_path):
    fake_gpus(2)
    first = acquire_device(lock_dir=tmp_path)
    second = acquire_device("cuda", lock_dir=tmp_path)
    assert {first.device, second.device} == {torch.device("cuda", 0), torch.device("cuda", 1)}
    assert {first.lock_path.name, second.lock_path.name} == {"gpu0.lock", "gpu1.lock"}
    first.release()
    second.release()


def test_third_job_waits_until_a_gpu_is_released(fake_gpus, tmp_path, caplog):
    fake_gpus(2)
    first = acquire_device(lock_dir=tmp_path)
    second = acquire_device(lock_dir=tmp_path)
    result = {}

    def third_job() -> None:
        result["lease"] = acquire_device(lock_dir=tmp_path, **FAST)

    with caplog.at_level(logging.INFO, logger="infoopt.devices"):
        thread = threading.Thread(target=third_job, daemon=True)
        thread.start()
        wait_until(lambda: "all 2 GPUs are taken" in caplog.text, "the waiting log line")
        assert thread.is_alive() and "lease" not in result
        second.release()
        thread.join(timeout=30)
    assert result["lease"].device == second.device
    result["lease"].release()
    first.release()


def test_leaving_the_with_block_frees_the_gpu(fake_gpus, tmp_path):
    fake_gpus(2)
    with acquire_device(lock_dir=tmp_path) as lease:
        assert lease.device == torch.device("cuda", 0)
    with acquire_device(lock_dir=tmp_path) as again:
        assert again.device == torch.device("cuda", 0)


@pytest.mark.parametrize(
    ("preferred", "expected"),
    [
        ("cpu", torch.device("cpu")),
        ("cuda:1", torch.device("cuda", 1)),
        ("CUDA:0", torch.device("cuda", 0)),
    ],
)
def test_explicit_device_is_used_as_given_without_locking(fake_gpus, tmp_path, preferred, expected):
    fake_gpus(2)
    held = [acquire_device(lock_dir=tmp_path), acquire_device(lock_dir=tmp_path)]
    lease = acquire_device(preferred, lock_dir=tmp_path)
    assert lease.device == expected
    assert lease.lock_path is None
    for other in held:
        other.release()


@pytest.mark.parametrize(
    ("count", "preferred", "error", "message"),
    [
        (2, "cuda:2", ValueError, "cuda:0, cuda:1"),
        (0, "cuda:0", ValueError, "CUDA is not available"),
        (2, "gpu", ValueError, "unknown device 'gpu'"),
        (0, "cuda", RuntimeError, "CUDA is not available"),
    ],
)
def test_bad_device_requests_name_the_problem(
    fake_gpus, tmp_path, count, preferred, error, message
):
    fake_gpus(count)
    with pytest.raises(error, match=message):
        acquire_device(preferred, lock_dir=tmp_path)


def test_single_visible_device_is_used_without_locking(fake_gpus, monkeypatch, tmp_path):
    fake_gpus(1)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    lease = acquire_device(lock_dir=tmp_path / "locks")
    assert lease.device == torch.device("cuda", 0)
    assert lease.lock_path is None
    assert not (tmp_path / "locks").exists()


def test_locks_are_named_by_the_physical_gpu(fake_gpus, monkeypatch, tmp_path):
    fake_gpus(2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,GPU-1a2b/3")
    first = acquire_device(lock_dir=tmp_path)
    second = acquire_device(lock_dir=tmp_path)
    assert (first.device, first.lock_path.name) == (torch.device("cuda", 0), "gpu5.lock")
    assert (second.device, second.lock_path.name) == (torch.device("cuda", 1), "gpuGPU-1a2b_3.lock")
    first.release()
    second.release()


def test_lock_directory_is_created(fake_gpus, tmp_path):
    fake_gpus(1)
    lock_dir = tmp_path / "a" / "b"
    with acquire_device(lock_dir=lock_dir) as lease:
        assert lease.lock_path.parent == lock_dir
        assert lock_dir.is_dir()


def test_lock_directory_comes_from_the_environment(fake_gpus, monkeypatch, tmp_path):
    fake_gpus(1)
    monkeypatch.setenv(LOCK_DIR_ENV, str(tmp_path / "shared"))
    with acquire_device() as lease:
        assert lease.lock_path == tmp_path / "shared" / "gpu0.lock"


def test_default_lock_directory_is_per_user_in_the_temp_dir(fake_gpus):
    lock_dir = default_lock_dir()
    assert lock_dir.parent == Path(tempfile.gettempdir())
    assert str(os.getuid()) in lock_dir.name


CHILD = """
import sys, time, torch
torch.cuda.is_available = lambda: True
torch.cuda.device_count = lambda: 2
from infoopt.devices import acquire_device
lease = acquire_device(lock_dir=sys.argv[1])
print(lease.device, flush=True)
time.sleep(600)
"""


def test_sigkilled_holder_frees_its_gpu(fake_gpus, tmp_path):
    fake_gpus(2)
    env = {k: v for k, v in os.environ.items() if k not in ("CUDA_VISIBLE_DEVICES", LOCK_DIR_ENV)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert child.stdout.readline().strip() == "cuda:0"
        with acquire_device(lock_dir=tmp_path, **FAST) as lease:
            assert lease.device == torch.device("cuda", 1)
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
        with acquire_device(lock_dir=tmp_path, **FAST) as lease:
            assert lease.device == torch.device("cuda", 0)
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
