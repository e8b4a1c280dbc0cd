"""The live Slurm runs that tests/test_slurm.py inspects, started when the test session begins.

A Slurm run spends most of its time waiting for the plugin's next status check, minutes in all:
started by the session's first test (conftest.py's ``slurm_runs``), they run while the other
tests use the CPUs, and test_slurm.py, among the last modules, mostly finds them finished.

Snakemake runs with the real cluster profile and the test cluster's overrides on top of it
(``--profile workflow/profiles/slurm --profile tests/slurm/profile``: a later profile replaces
each top-level key it names) and the smoke workflow profile, on the smoke configuration with
tests/slurm/experiment.yaml on top (one training run, two checkpoints, the Hessian of the last,
in two shares). A ``--configfile`` on the command line replaces the workflow profile's
``configfiles`` list instead of extending it: hence :func:`configfiles`. The targets, TARGETS
(Table 1 from training, Table 4 from the Hessians), need every stage: data, init, train,
hessian, both collections and the notebooks.

The runs (:class:`SlurmRuns`): the local reference and the whole workflow through Slurm start
at once; once the reference has prepared the data and initial weights, a run whose training job
cannot start (damaged initial weights) and a run whose training job is cancelled mid-run, both
from those inputs, so that training is their first job.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from conftest import REPO, SMOKE, copy_workflow, resumable_step, snakemake, snakemake_env

SLURM = (
    "--profile",
    "workflow/profiles/slurm",
    "--profile",
    str(REPO / "tests/slurm/profile"),
    "--workflow-profile",
    "workflow/profiles/smoke",
)
TARGETS = ("table1", "table4")
RUN = "results/runs/digits/resnet18/sgd/seed0"
TRAIN_INPUTS = ("resources/data/digits.npz", "results/init/digits/resnet18/seed0.pt")
# Upper bounds that turn a hung run (Snakemake waits forever on a job state it does not
# understand) into a failure; the runs take a fraction of them, even beside the other tests.
LOCAL_TIMEOUT = 900
SLURM_TIMEOUT = 1200
USABLE_NODE_STATES = {"idle", "mixed", "allocated", "completing"}


def configfiles(*extra: str) -> tuple[str, ...]:
    """The smoke configuration, reduced for these tests, then ``extra`` config files."""
    return (
        "--configfile",
        "config.yaml",
        "workflow/profiles/smoke/experiment.yaml",
        str(REPO / "tests/slurm/experiment.yaml"),
        *extra,
    )


def cluster_problem() -> str | None:
    """Why the live cluster cannot run these tests, or None."""
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        return "snakemake-executor-plugin-slurm is not installed (pip install -e '.[slurm]')"
    if not Path("/etc/slurm/slurm.conf").exists():
        return "/etc/slurm/slurm.conf does not exist (start the cluster: bash .ci/slurm-up.sh)"
    answers = {}
    for command in (["sinfo", "-h", "-o", "%T"], ["sacct", "-n", "-X", "--starttime", "now"]):
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as error:
            return f"`{' '.join(command)}` failed: {error}"
        if result.returncode != 0:
            return f"`{' '.join(command)}` failed: {result.stderr.strip()}"
        answers[command[0]] = result.stdout.split()
    if not USABLE_NODE_STATES & set(answers["sinfo"]):
        return f"no node is up: sinfo reports the states {answers['sinfo']}"
    return None


def _cancel_jobs_in(workdir: Path) -> None:
    """Cancel the jobs of ``workdir`` still queued or running (a failed test leaves them)."""
    listed = subprocess.run(
        ["squeue", "-h", "-o", "%i|%Z"], capture_output=True, text=True, timeout=30, check=True
    )
    jobs = [
        job
        for job, folder in (line.split("|", 1) for line in listed.stdout.splitlines())
        if Path(folder) == workdir
    ]
    if jobs:
        subprocess.run(["scancel", *jobs], timeout=30, check=True)


class SlurmRun:
    """Snakemake through Slurm in ``workdir``, in the background, for at most SLURM_TIMEOUT s."""

    def __init__(self, workdir: Path, *args: str) -> None:
        self.workdir = workdir
        self.output_path = workdir / "snakemake.out"
        self.deadline = time.monotonic() + SLURM_TIMEOUT
        with self.output_path.open("w") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "snakemake", *SLURM, *args],
                cwd=workdir,
                env=snakemake_env(),
                stdout=output,
                stderr=subprocess.STDOUT,
            )

    def running(self) -> bool:
        return self.process.poll() is None

    def output(self) -> str:
        return self.output_path.read_text()

    def finish(self) -> tuple[int, str]:
        """Wait for the run to end; its return code and output."""
        try:
            self.process.wait(timeout=max(0.0, self.deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(
                f"Snakemake did not finish within {SLURM_TIMEOUT} s:\n{self.output()}"
            ) from None
        return self.process.returncode, self.output()

    def stop(self) -> None:
        """Kill Snakemake if it still runs (it ignores SIGTERM while jobs run); cancel its jobs."""
        if self.running():
            self.process.kill()
            self.process.wait()
        _cancel_jobs_in(self.workdir)


def _running_train_job(workdir: Path) -> str | None:
    listed = subprocess.run(
        ["squeue", "-h", "-t", "RUNNING", "-o", "%i|%k|%Z"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    for line in listed.stdout.splitlines():
        job, comment, folder = line.split("|", 2)
        if Path(folder) == workdir and comment.startswith("rule_train_"):
            return job
    return None


def _cancel_once_resumable(run: SlurmRun) -> str | None:
    """scancel the run's training job once it has a state to resume from; its job ID, or None."""
    while run.running() and time.monotonic() < run.deadline:
        if resumable_step(run.workdir / "results/store") > 0:
            job = _running_train_job(run.workdir)
            if job is not None:
                subprocess.run(["scancel", job], timeout=30, check=True)
                return job
        time.sleep(0.05)
    return None


def _copy_train_inputs(source: Path, workdir: Path) -> None:
    """The prepared data and initial weights of another run, so that training is the first job."""
    for path in TRAIN_INPUTS:
        (workdir / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / path, workdir / path)


class SlurmRuns:
    """The runs the Slurm tests inspect, going on in the background (see the module's text).

    ``whole``: the reduced smoke workflow through Slurm, to the end. After :meth:`ready`:
    ``local``, the same run locally, the reference; ``failing``, the same targets with a
    training job that cannot start; ``cancelled``, the training run whose job is cancelled
    once it has a state to resume from, and ``cancelled_job``, that job's ID (None if it
    ended first). Job states of ``cancelled`` come from squeue: plugin 2.8.0 takes sacct's
    state of a cancelled job, "CANCELLED by 0", for a job still running and would wait forever.
    """

    def __init__(self, factory) -> None:
        self.whole = SlurmRun(copy_workflow(factory.mktemp("slurm")), *TARGETS, *configfiles())
        self.local = copy_workflow(factory.mktemp("local"))
        self.failing: SlurmRun | None = None
        self.cancelled: SlurmRun | None = None
        self.cancelled_job: str | None = None
        self._error: BaseException | None = None
        self._stopping = False
        self._lock = threading.Lock()
        self._folders = {name: factory.mktemp(name) for name in ("failing", "cancelled")}
        self._thread = threading.Thread(target=self._from_the_reference, daemon=True)
        self._thread.start()

    def _from_the_reference(self) -> None:
        try:
            snakemake(self.local, *TARGETS, *SMOKE, *configfiles(), timeout=LOCAL_TIMEOUT)
            failing = copy_workflow(self._folders["failing"])
            _copy_train_inputs(self.local, failing)
            # Damaged initial weights: the configuration is valid, so only training can fail.
            init = failing / TRAIN_INPUTS[-1]
            init.write_bytes(init.read_bytes()[:1000])
            cancelled = copy_workflow(self._folders["cancelled"])
            _copy_train_inputs(self.local, cancelled)
            with self._lock:
                if self._stopping:
                    return
                self.failing = SlurmRun(failing, *TARGETS, *configfiles())
                self.cancelled = SlurmRun(
                    cancelled,
                    *configfiles(),
                    "--slurm-status-command",
                    "squeue",
                    f"{RUN}/run.json",
                )
            self.cancelled_job = _cancel_once_resumable(self.cancelled)
        except BaseException as error:  # re-raised in the tests, by ready()
            self._error = error

    def ready(self) -> SlurmRuns:
        """Wait until the reference has run, every run has started and the training job of
        ``cancelled`` has been cancelled (or its run has ended)."""
        self._thread.join(timeout=LOCAL_TIMEOUT + SLURM_TIMEOUT)
        if self._thread.is_alive():
            raise AssertionError("the Slurm runs did not start in time")
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        """Stop every run still going and cancel its jobs; start no more."""
        with self._lock:
            self._stopping = True
        for run in (self.whole, self.failing, self.cancelled):
            if run is not None:
                run.stop()
        self._thread.join(timeout=60)


def wanted(items) -> bool:
    """Whether the session runs Slurm tests, on a usable cluster."""
    return any(item.get_closest_marker("slurm") for item in items) and cluster_problem() is None
