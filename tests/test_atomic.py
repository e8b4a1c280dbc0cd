"""Atomic outputs (infoopt.atomic) under a kill, and the provenance's dirty mark."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from conftest import REPO
from infoopt.atomic import write_text
from infoopt.provenance import git_commit

# Writes half of its output through atomic_path, says so, and hangs: killed there.
KILLED_WRITER = """
import sys, time
from infoopt.atomic import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    with open(tmp, "w") as handle:
        handle.write("x" * 1_000_000)
        handle.flush()
        print("half written", flush=True)
        time.sleep(600)
"""


@pytest.mark.parametrize("old", [None, "done before\n"])
def test_a_killed_write_leaves_no_file_that_looks_done(tmp_path, old):
    target = tmp_path / "out" / "table.csv"
    if old is not None:
        write_text(old, target)
    env = os.environ | {"PYTHONPATH": str(REPO / "src")}
    process = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(target)], env=env, stdout=subprocess.PIPE
    )
    try:
        assert process.stdout.readline() == b"half written\n"
        partial = [p for p in target.parent.iterdir() if p != target]
        assert len(partial) == 1 and partial[0].stat().st_size == 1_000_000, "it was mid-write"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
        process.stdout.close()
    assert process.returncode == -signal.SIGKILL
    if old is None:
        assert not target.exists()
    else:
        assert target.read_text() == old, "the finished file is left as it was"
    leftovers = [p.name for p in target.parent.iterdir() if p != target]
    assert all(name.startswith(".table.csv.tmp-") for name in leftovers), leftovers


def test_a_failed_write_leaves_nothing(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(TypeError):
        write_text(None, target)
    assert list(tmp_path.iterdir()) == []


def git(cwd, *args: str) -> str:
    identity = ("-c", "user.name=t", "-c", "user.email=t@example.org")
    return subprocess.run(
        ["git", *identity, *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


def test_git_commit_marks_an_uncommitted_change_dirty(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    repo = tmp_path / "repo"
    repo.mkdir()
    assert git_commit(repo) is None, "outside a repository"
    git(repo, "init", "-q")
    (repo / "code.py").write_text("a = 1\n")
    git(repo, "add", "code.py")
    git(repo, "commit", "-q", "-m", "first")
    head = git(repo, "rev-parse", "HEAD")
    assert git_commit(repo) == head
    (repo / "notes.txt").write_text("untracked\n")
    assert git_commit(repo) == head, "an untracked file does not change the code"
    (repo / "code.py").write_text("a = 2\n")
    assert git_commit(repo) == f"{head}-dirty"
    git(repo, "add", "code.py")
    assert git_commit(repo) == f"{head}-dirty", "a staged change too"
    git(repo, "commit", "-q", "-m", "second")
    assert git_commit(repo) == git(repo, "rev-parse", "HEAD")
