"""How fast the finished smoke workflow decides there is nothing to do, and reruns one table.

    python benchmarks/workflow_speed.py WORKDIR [--cores 2] [--repeats 3] [--target table3]

WORKDIR is a directory where the smoke workflow has run to the end. Two measurements, each
beside a baseline in the same process (median wall seconds over the repeats, and the CPU
seconds of the child processes):

- no-op: ``snakemake --cores N --workflow-profile workflow/profiles/smoke`` against starting
  Python and importing Snakemake alone (``snakemake --version``);
- one table: ``snakemake ... --force TARGET`` against running the rule's own shell command
  (papermill on the notebook) directly.

When ``/etc/slurm/slurm.conf`` exists, the Slurm executor plugin runs ``scontrol show config``
(10 s timeout) at every Snakemake start; without a running slurmctld that adds up to 10 s to
every measurement here. The script times that probe and prints it, so a slow probe is visible.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

PROFILE = "workflow/profiles/smoke"
LIMITS = {"no-op": 5.0, "one table": 15.0}


def child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, str]:
    """Wall seconds, child CPU seconds and output of one run of ``command``."""
    cpu, start = child_cpu(), time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
    return wall, child_cpu() - cpu, result.stdout + result.stderr


def median_of(repeats: int, command: list[str], cwd: Path, env: dict[str, str]):
    runs = [timed(command, cwd, env) for _ in range(repeats)]
    return (
        statistics.median(run[0] for run in runs),
        statistics.median(run[1] for run in runs),
        runs[-1][2],
    )


def slurm_probe() -> float | None:
    """Seconds the Slurm plugin's start-up probe takes here (None without a Slurm config)."""
    if not Path("/etc/slurm/slurm.conf").exists():
        return None
    start = time.perf_counter()
    with contextlib.suppress(FileNotFoundError, subprocess.TimeoutExpired):
        subprocess.run(["scontrol", "show", "config"], capture_output=True, timeout=15)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("workdir", type=Path, help="a finished smoke workflow directory")
    parser.add_argument("--cores", default="2")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--target", default="table3", help="a table or figure rule")
    args = parser.parse_args()

    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    snakemake = [sys.executable, "-m", "snakemake", "--cores", args.cores]
    snakemake += ["--workflow-profile", PROFILE]
    _, _, plan = timed([*snakemake, "--dry-run"], args.workdir, env)
    if "Nothing to be done" not in plan:
        raise SystemExit(f"{args.workdir} is not a finished smoke run: a dry run plans jobs")
    _, _, plan = timed(
        [*snakemake, "--dry-run", "--printshellcmds", "--force", args.target], args.workdir, env
    )
    shell = re.search(r"^Shell command: (.+)$", plan, flags=re.MULTILINE)
    if shell is None:
        raise SystemExit(f"no shell command for {args.target!r} in the dry run:\n{plan}")

    probe = slurm_probe()
    print(f"cores {args.cores}, repeats {args.repeats}, load average {os.getloadavg()[0]:.2f}")
    print(
        "slurm probe: none (no /etc/slurm/slurm.conf)"
        if probe is None
        else f"slurm probe (scontrol show config at every Snakemake start): {probe:.2f} s"
    )
    rows = []
    start_wall, start_cpu, _ = median_of(
        args.repeats, [*snakemake[:3], "--version"], args.workdir, env
    )
    noop_wall, noop_cpu, output = median_of(args.repeats, snakemake, args.workdir, env)
    if "Nothing to be done" not in output:
        raise SystemExit(f"the no-op run did something:\n{output}")
    rows.append(("no-op", "snakemake --version", start_wall, start_cpu, noop_wall, noop_cpu))
    direct_wall, direct_cpu, _ = median_of(
        args.repeats, ["bash", "-c", shell.group(1)], args.workdir, env
    )
    table_wall, table_cpu, _ = median_of(
        args.repeats, [*snakemake, "--force", args.target], args.workdir, env
    )
    rows.append(
        ("one table", f"papermill {args.target}", direct_wall, direct_cpu, table_wall, table_cpu)
    )

    print(
        f"{'measure':<10} {'baseline':<22} {'base s':>7} {'(cpu)':>7} {'ours s':>7} {'(cpu)':>7}"
        f" {'ratio':>6} {'limit s':>8}"
    )
    for name, baseline, base_wall, base_cpu, wall, cpu in rows:
        verdict = "ok" if wall < LIMITS[name] else "OVER"
        print(
            f"{name:<10} {baseline:<22} {base_wall:7.2f} {base_cpu:7.2f} {wall:7.2f} {cpu:7.2f}"
            f" {wall / base_wall:6.2f} {LIMITS[name]:8.1f} {verdict}"
        )


if __name__ == "__main__":
    main()
