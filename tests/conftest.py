"""Shared fixtures: the repository's paths and a prepared digits dataset."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from hypothesis import settings

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"

# In CI the property tests draw the same examples every run: a red CI is reproducible, and a
# green one does not turn red on a later run of the same code.
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """The session's own cache directory, also for the Snakemake runs it starts (they inherit
    the environment): no test reads or leaves the user's (infoopt.hessian.cost keeps measured
    model sizes under $XDG_CACHE_HOME/infoopt)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(autouse=True)
def restore_torch_threads():
    """Commands run in-process set torch's thread count (--threads); no test leaks it."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def private_store(tmp_path, monkeypatch):
    """Commands run in-process file their results in a store of the test's own."""
    monkeypatch.setenv("INFOOPT_STORE", str(tmp_path / "store"))


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models on one thread: OpenMP threads only spin on a shared 2-core machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def digits_npz(tmp_path_factory) -> Path:
    from infoopt.data import prepare

    folder = tmp_path_factory.mktemp("digits")
    return prepare("digits", folder / "raw", folder / "digits.npz")


@pytest.fixture
def paper_config() -> dict:
    return yaml.safe_load((REPO / "config.yaml").read_text())


@pytest.fixture
def smoke_config(paper_config) -> dict:
    """config.yaml with the smoke profile's experiment merged over it, as Snakemake does."""
    from snakemake.utils import update_config

    smoke = yaml.safe_load((REPO / "workflow/profiles/smoke/experiment.yaml").read_text())
    update_config(paper_config, smoke)
    return paper_config


WORKFLOW_FILES = ("Snakefile", "config.yaml", "workflow", "notebooks", "src", "envs")


def copy_workflow(destination: Path) -> Path:
    """Copy what the workflow needs (Snakefile, config, rules, notebooks, src) there."""
    import shutil

    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", ".ipynb_checkpoints")
    for name in WORKFLOW_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, destination / name, ignore=ignore)
        else:
            shutil.copy2(source, destination / name)
    return destination


def snakemake_env() -> dict[str, str]:
    """This environment, with this interpreter first on PATH (the rules call `python -m ...`)."""
    import os
    import sys

    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    # A workflow's jobs use its own store, results/store.
    env.pop("INFOOPT_STORE", None)
    return env


def snakemake(cwd: Path, *args: str, timeout: float = 900, check: bool = True):
    """Run Snakemake in ``cwd``, for at most ``timeout`` seconds."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "snakemake", *args],
        cwd=cwd,
        env=snakemake_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
        )
    return result


def resumable_step(root: Path) -> int:
    """The step a killed run would resume at, from the first resume state under ``root`` (a
    run's folder, or a result store); 0 before its state exists or once the run has ended and
    removed it."""
    import torch

    for state in root.glob("**/resume.pt"):
        try:
            return torch.load(state, weights_only=False)["state"]["step"]
        except FileNotFoundError:
            return 0
    return 0


SMOKE = ("--cores", "2", "--workflow-profile", "workflow/profiles/smoke")


@dataclass(frozen=True)
class SmokeRun:
    """The session's smoke workflow run to the end: its folder, and why it failed (the tail of
    Snakemake's log) or None."""

    workdir: Path
    failure: str | None


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime) of every file under ``folder`` (Snakemake's records included)."""
    return {
        str(path.relative_to(folder)): (path.lstat().st_size, path.lstat().st_mtime_ns)
        for path in folder.rglob("*")
        if not path.is_dir() and "__pycache__" not in path.parts
    }


def _tail(text: str | bytes | None, lines: int = 60) -> str:
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return "\n".join((text or "").splitlines()[-lines:])


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Iterator[SmokeRun]:
    """The smoke workflow, run once; a failure is kept, not raised, so that one test
    (test_workflow.py::test_smoke_run_finishes) reports it and the others skip. Tests only read
    its folder (those that run Snakemake work on a copy): the session's end checks that."""
    import subprocess

    workdir = copy_workflow(tmp_path_factory.mktemp("smoke"))
    try:
        result = snakemake(workdir, *SMOKE, timeout=1800, check=False)
        failure = None
        if result.returncode != 0:
            failure = f"exit status {result.returncode}:\n{_tail(result.stderr)}"
    except subprocess.TimeoutExpired as expired:
        failure = f"timed out after {expired.timeout:.0f} s:\n{_tail(expired.stderr)}"
    before = _files(workdir)
    yield SmokeRun(workdir, failure)
    after = _files(workdir)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"tests wrote into the shared smoke folder: {changed[:20]}"


@pytest.fixture(scope="session")
def smoke(smoke_run) -> Path:
    """The finished smoke workflow's folder, to read; the test skips if the run failed."""
    if smoke_run.failure is not None:
        pytest.skip("the smoke run failed: test_workflow.py::test_smoke_run_finishes says why")
    return smoke_run.workdir


def copy_smoke(smoke: Path, destination: Path) -> Path:
    """A copy of the finished smoke workflow (files, times and Snakemake's records): what a
    test runs Snakemake on, even a dry run, which writes Snakemake's records."""
    import shutil

    return Path(shutil.copytree(smoke, destination / "smoke", symlinks=True))


@pytest.fixture(scope="session")
def smoke_report(smoke, tmp_path_factory) -> str:
    """The HTML of `snakemake --report` of the finished smoke workflow."""
    folder = tmp_path_factory.mktemp("report")
    report = folder / "report.html"
    result = snakemake(copy_smoke(smoke, folder), *SMOKE, "--report", str(report))
    assert "ERROR" not in result.stderr, "the captions are valid reStructuredText"
    return report.read_text()


def report_variable(html: str, name: str) -> dict:
    """A JSON object the report's HTML assigns to ``var <name>`` in ``<script id="<name>">``."""
    import json
    import re

    found = re.search(rf'<script id="{name}">\s*var {name} = (\{{.*?\}});\s*</script>', html, re.S)
    assert found, f"no {name} in the report"
    return json.loads(found.group(1))


@pytest.fixture
def smoke_copy(smoke, tmp_path) -> Path:
    """A copy of the finished smoke workflow (:func:`copy_smoke`), the test's own."""
    return copy_smoke(smoke, tmp_path)


def after_the_smoke_run(request) -> None:
    """Wait for the session's smoke run if its tests read it: a run started in the background
    while it goes on would only slow it down (it keeps both cores busy, and most tests wait for
    it), while it overlaps the lighter minutes of the tests after it."""
    if any("smoke_run" in getattr(item, "fixturenames", ()) for item in request.session.items):
        request.getfixturevalue("smoke_run")


@pytest.fixture(scope="session", autouse=True)
def slurm_runs(request, tmp_path_factory):
    """The Slurm tests' runs (tests/slurm_runs.py), started in the background with the
    session's first test (after the smoke run) so that their minutes of waiting for Slurm overlap
    the other tests; None when the session runs no Slurm test or has no usable cluster
    (tests/test_slurm.py then skips, or fails in CI)."""
    from slurm_runs import SlurmRuns, wanted

    if not wanted(request.session.items):
        yield None
        return
    after_the_smoke_run(request)
    runs = SlurmRuns(tmp_path_factory)
    try:
        yield runs
    finally:
        runs.stop()


class BackgroundRun:
    """A command started in the background in ``workdir``, its output kept in a file, in a
    process group of its own so that :meth:`stop` ends its children (Snakemake and its jobs)."""

    def __init__(self, command: list[str], workdir: Path, timeout: float) -> None:
        import subprocess
        import time

        self.workdir = workdir
        self.command = command
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self._output = workdir / "background.out"
        with self._output.open("w") as output:
            self.process = subprocess.Popen(
                command,
                cwd=workdir,
                env=snakemake_env(),
                stdout=output,
                stderr=output,
                start_new_session=True,
            )

    def finish(self) -> tuple[int, str]:
        """Wait for the command to end (killed at its deadline); its exit status and output."""
        import subprocess
        import time

        try:
            self.process.wait(timeout=max(0.0, self.deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(
                f"{' '.join(self.command)} did not finish within {self.timeout:.0f} s:\n"
                f"{_tail(self._output.read_text())}"
            ) from None
        return self.process.returncode, self._output.read_text()

    def stop(self) -> None:
        import os
        import signal

        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@pytest.fixture(scope="session", autouse=True)
def rehearsal_run(request, tmp_path_factory) -> Iterator[BackgroundRun | None]:
    """The dress rehearsal (tests/test_rehearsal.py), started in the background with the
    session's first test (after the smoke run), so that its minutes overlap the tests that leave
    a core idle; None when the session runs none of its tests."""
    import sys

    if not any(item.path.name == "test_rehearsal.py" for item in request.session.items):
        yield None
        return
    after_the_smoke_run(request)
    workdir = copy_workflow(tmp_path_factory.mktemp("rehearsal"))
    run = BackgroundRun([sys.executable, "-m", "infoopt.rehearsal", "--cores", "2"], workdir, 1800)
    try:
        yield run
    finally:
        run.stop()


def drawn_intervals(ax) -> tuple[dict, dict]:
    """Scope -> the x of its estimates, and scope -> the segments of its intervals, as
    figures._interval_figure draws them."""
    estimates = {
        line.get_gid().removeprefix("tau:"): line.get_xdata()
        for line in ax.get_lines()
        if (line.get_gid() or "").startswith("tau:")
    }
    intervals = {
        lines.get_gid().removeprefix("interval:"): lines
        for lines in ax.collections
        if (lines.get_gid() or "").startswith("interval:")
    }
    return estimates, intervals
