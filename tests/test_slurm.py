"""The smoke workflow, unchanged, on the live single-node Slurm of .ci/slurm-up.sh.

The runs these tests inspect (tests/slurm_runs.py: the reduced smoke workflow locally and
through Slurm, one with a training job that cannot start, one whose training job is cancelled)
start with the test session and go on in the background. Every Slurm job costs two Snakemake
start-ups and rounds of the plugin's status polling (tens of seconds), so the runs are cut to
fit CI's time, in a way that does not grow with the workflow: one training run, two checkpoints,
the Hessian of the last in two shares, and the targets Table 1 and Table 4, which need every
stage (``all`` would add one notebook job per table and figure).

Without a usable cluster the tests skip, unless INFOOPT_REQUIRE_SLURM=1 (CI): then they fail.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import torch
import yaml

from conftest import REPO
from infoopt.checkpoint import load_checkpoint
from slurm_runs import RUN, SlurmRuns, cluster_problem

pytestmark = pytest.mark.slurm


@pytest.fixture(scope="module")
def cluster() -> None:
    problem = cluster_problem()
    if problem is None:
        return
    if os.environ.get("INFOOPT_REQUIRE_SLURM") == "1":
        pytest.fail(f"INFOOPT_REQUIRE_SLURM=1 but the Slurm cluster is not usable: {problem}")
    pytest.skip(f"no live Slurm cluster: {problem}")


@pytest.fixture(scope="module")
def runs(cluster, slurm_runs) -> SlurmRuns:
    return slurm_runs.ready()


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


def test_cancelled_training_job_is_retried_and_resumes(runs):
    """A training job cancelled mid-run (scancel): Snakemake retries it, it resumes, the
    weights are the same."""
    cancelled = runs.cancelled_job
    returncode, output = runs.cancelled.finish()
    assert cancelled, f"the training job ended before it could be cancelled:\n{output}"
    assert returncode == 0, output

    accounted = _accounted_jobs(_run_id(output))
    assert accounted.pop(cancelled, ("", ""))[1].startswith("CANCELLED"), cancelled
    assert list(accounted.values()) == [("train", "COMPLETED")], "one retry, which completed"
    workdir = runs.cancelled.workdir
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
