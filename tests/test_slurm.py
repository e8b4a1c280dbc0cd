"""The smoke workflow, unchanged, on the live single-node Slurm of .ci/slurm-up.sh.

Snakemake runs with the real cluster profile and the test cluster's overrides on top of it
(``--profile workflow/profiles/slurm --profile tests/slurm/profile``: a later profile replaces
each top-level key it names) and the smoke workflow profile. Every Slurm job costs two Snakemake
start-ups and rounds of the plugin's status polling (tens of seconds), so the runs are cut to
fit CI's time, in a way that does not grow with the workflow:

- the configuration: the smoke one with tests/slurm/experiment.yaml on top (one training run,
  two checkpoints, the Hessian of the last). A ``--configfile`` on the command line replaces the
  workflow profile's ``configfiles`` list instead of extending it: hence ``configfiles()``.
- the targets: TARGETS, Table 1 (from training) and Table 4 (from the Hessians), which need
  every stage: data, init, train, hessian, both collections and the notebooks. ``all`` adds
  one notebook job per table and figure.

The cancellation and failure runs start from the local run's prepared data and initial weights,
so that training is their first job. The Slurm runs spend most of their time waiting for the
plugin's next status check, and each job takes one of the node's CPUs, so the runs of this module
overlap: the whole-workflow run and the failing run go on in the background while the
cancellation test watches its own run.

Without a usable cluster the tests skip, unless INFOOPT_REQUIRE_SLURM=1 (CI): then they fail.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import torch
import yaml

from conftest import REPO, SMOKE, copy_workflow, resumable_step, snakemake, snakemake_env
from infoopt.checkpoint import load_checkpoint

pytestmark = pytest.mark.slurm

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
# understand) into a failure; the runs take a fraction of them.
LOCAL_TIMEOUT = 600
SLURM_TIMEOUT = 900
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


def _cluster_problem() -> str | None:
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


@pytest.fixture(scope="module")
def cluster() -> None:
    problem = _cluster_problem()
    if problem is None:
        return
    if os.environ.get("INFOOPT_REQUIRE_SLURM") == "1":
        pytest.fail(f"INFOOPT_REQUIRE_SLURM=1 but the Slurm cluster is not usable: {problem}")
    pytest.skip(f"no live Slurm cluster: {problem}")


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


def _run_id(output: str) -> str:
    """The plugin's run ID: the Slurm job name of every job of the run."""
    found = re.search(r"SLURM run ID: (\S+)", output)
    assert found, f"Snakemake did not report a SLURM run ID:\n{output}"
    return found.group(1)


def _accounted_jobs(run_id: str) -> dict[str, tuple[str, str]]:
    """Slurm's accounting (sacct) of a Snakemake run: job ID -> (rule, state).

    The rule is in the ``--comment rule_<rule>[_wildcards_<values>]`` the plugin passes to
    sbatch. The test cluster's slurmdbd does not store comments (that needs
    ``AccountingStoreFlags=job_comment``), so it is read from the recorded submit line.
    """
    since = (datetime.now() - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S")
    result = subprocess.run(
        ["sacct", "-X", "-n", "--parsable2", "--name", run_id, "--starttime", since]
        + ["--format=JobIDRaw,State,SubmitLine"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    jobs = {}
    for line in result.stdout.splitlines():
        job, state, submit_line = line.split("|", 2)
        comment = re.search(r"--comment rule_(\w+?)(?:_wildcards_\S*)?\s", submit_line)
        assert comment, f"job {job} was not submitted by the plugin: {submit_line}"
        jobs[job] = (comment.group(1), state)
    return jobs


def _job_stats(output: str) -> Counter[str]:
    """Jobs per rule of the DAG Snakemake planned (its "Job stats" table)."""
    counts: Counter[str] = Counter()
    for line in output.split("Job stats:", 1)[1].splitlines()[3:]:
        rule, count = line.split()
        if rule == "total":
            return counts
        counts[rule] = int(count)
    raise AssertionError(f"no complete Job stats table in:\n{output}")


def _copy_train_inputs(source: Path, workdir: Path) -> None:
    """The prepared data and initial weights of another run, so that training is the first job."""
    for path in TRAIN_INPUTS:
        (workdir / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / path, workdir / path)


@dataclass
class Runs:
    """The runs the tests of this module inspect."""

    local: Path
    """The reduced smoke workflow run locally on 2 cores: the reference."""
    whole: SlurmRun
    """The reduced smoke workflow through Slurm, to the end."""
    failing: SlurmRun
    """The same targets with a training job that cannot start (damaged initial weights)."""


@pytest.fixture(scope="module")
def runs(cluster, tmp_path_factory) -> Iterator[Runs]:
    """The local run first (it uses both cores), then the two background Slurm runs."""
    local = copy_workflow(tmp_path_factory.mktemp("local"))
    snakemake(local, *TARGETS, *SMOKE, *configfiles(), timeout=LOCAL_TIMEOUT)

    failing = copy_workflow(tmp_path_factory.mktemp("failing"))
    _copy_train_inputs(local, failing)
    # Damaged initial weights: the configuration is valid, so only the training job can fail.
    init = failing / TRAIN_INPUTS[-1]
    init.write_bytes(init.read_bytes()[:1000])

    started = Runs(
        local=local,
        whole=SlurmRun(copy_workflow(tmp_path_factory.mktemp("slurm")), *TARGETS, *configfiles()),
        failing=SlurmRun(failing, *TARGETS, *configfiles()),
    )
    try:
        yield started
    finally:
        try:
            started.whole.stop()
        finally:
            started.failing.stop()


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


def test_cancelled_training_job_is_retried_and_resumes(runs, tmp_path):
    """scancel a training job mid-run: Snakemake retries it, it resumes, the weights are the same.

    Job states come from squeue here: plugin 2.8.0 takes sacct's state of a cancelled job,
    "CANCELLED by 0", for a job still running and would wait forever; squeue says "CANCELLED".
    """
    workdir = copy_workflow(tmp_path)
    _copy_train_inputs(runs.local, workdir)
    run = SlurmRun(workdir, *configfiles(), "--slurm-status-command", "squeue", f"{RUN}/run.json")
    try:
        cancelled = _cancel_once_resumable(run)
        returncode, output = run.finish()
    finally:
        run.stop()
    assert cancelled, f"the training job ended before it could be cancelled:\n{output}"
    assert returncode == 0, output

    accounted = _accounted_jobs(_run_id(output))
    assert accounted.pop(cancelled, ("", ""))[1].startswith("CANCELLED"), cancelled
    assert list(accounted.values()) == [("train", "COMPLETED")], "one retry, which completed"
    train_log = (workdir / "logs/train/digits/resnet18/sgd/seed0.log").read_text()
    resumed = re.findall(r"resuming at step (\d+) of (\d+)", train_log)
    assert len(resumed) == 1, train_log
    step, total = map(int, resumed[0])
    assert 0 < step < total, "cancelled mid-run, resumed from where it was"

    ours = load_checkpoint(workdir / RUN / "ckpt/1.00.pt")
    reference = load_checkpoint(runs.local / RUN / "ckpt/1.00.pt")
    weights, reference_weights = ours.pop("state_dict"), reference.pop("state_dict")
    assert weights.keys() == reference_weights.keys()
    for name, tensor in reference_weights.items():
        assert torch.equal(weights[name], tensor), name
    assert ours == reference, "the same step, metrics and metadata"


def test_every_job_goes_through_sbatch(runs):
    returncode, output = runs.whole.finish()
    assert returncode == 0, output
    accounted = _accounted_jobs(_run_id(output))
    submitted = set(re.findall(r"has been submitted with SLURM jobid (\d+)", output))
    assert set(accounted) == submitted, "Slurm's accounting lists exactly the submitted jobs"
    assert {state for _, state in accounted.values()} == {"COMPLETED"}, accounted
    assert not re.findall(r"^localrule \w+:$", output, flags=re.MULTILINE), "no job ran locally"
    assert Counter(rule for rule, _ in accounted.values()) == _job_stats(output)


def test_tables_equal_a_local_run(runs):
    returncode, output = runs.whole.finish()
    assert returncode == 0, output
    tables = sorted(path.name for path in (runs.local / "results/tables").glob("*.csv"))
    assert tables, "the local run wrote no tables"
    ours = runs.whole.workdir / "results/tables"
    assert sorted(path.name for path in ours.glob("*.csv")) == tables
    for name in tables:
        assert (ours / name).read_bytes() == (runs.local / "results/tables" / name).read_bytes()


def test_failing_job_stops_the_run_and_names_its_slurm_log(runs):
    """A training job that cannot start fails on each attempt; Snakemake exits naming its log.

    Its initial weights are damaged: the configuration check cannot see that, the job can.
    """
    returncode, output = runs.failing.finish()
    assert returncode != 0, output

    retries = yaml.safe_load((REPO / "tests/slurm/profile/config.yaml").read_text())["retries"]
    accounted = _accounted_jobs(_run_id(output))
    assert len(accounted) == 1 + retries, "the first attempt and the profile's retries"
    assert set(accounted.values()) == {("train", "FAILED")}, accounted
    errors = output.split("Error in rule ")[1:]
    for job in accounted:
        error = next((error for error in errors if f"SLURM-job '{job}' failed" in error), "")
        slurm_log = re.search(rf"^\s+log: .*?(\S+/{job}\.log)", error, flags=re.MULTILINE)
        assert slurm_log, f"no error of job {job} that names its Slurm log:\n{output}"
        path = Path(slurm_log.group(1))
        assert path.parent.parent.name == "rule_train" and path.exists(), path
    train_log = runs.failing.workdir / "logs/train/digits/resnet18/sgd/seed0.log"
    assert "infoopt train: error: checkpoint results/init/" in train_log.read_text()
    assert "is corrupt" in train_log.read_text()
