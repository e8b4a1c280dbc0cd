"""`./run`: installs only what is missing, then runs the smoke workflow or the tests.

The script runs in a copy of the checkout where `python3` makes a fake virtual environment whose
`python` only logs what it is asked to do, so nothing is installed and nothing else runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# `python3 -m venv DIR` makes DIR/bin/python (this script) and an activate that puts it on PATH;
# `python -c "import infoopt"` fails when IMPORT_FAILS is set.
FAKE_PYTHON = """#!/bin/sh
echo "$(basename "$0") $*" >>"$RUN_LOG"
case "$1 $2" in
  "-m venv")
    mkdir -p "$3/bin"
    cp "$0" "$3/bin/python"
    echo "PATH=\\"$(cd "$3" && pwd)/bin:\\$PATH\\"" >"$3/bin/activate" ;;
  "-c import infoopt") [ -z "${IMPORT_FAILS:-}" ] ;;
esac
"""

CREATE = ["python3 -m venv .venv", "python -m pip install --quiet --upgrade pip"]
INSTALL = ["python -m pip install --quiet -e .[test]", "python -m pip check"]
IMPORT = ["python -c import infoopt"]


@pytest.fixture
def checkout(tmp_path) -> Path:
    root = tmp_path / "checkout"
    root.mkdir()
    for name in ("run", "pyproject.toml"):
        shutil.copy2(REPO / name, root / name)
    fake = tmp_path / "bin" / "python3"
    fake.parent.mkdir()
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    return root


def run(checkout: Path, *args: str, **env: str) -> list[str]:
    """The commands `./run ARGS` had the fake python do."""
    log = checkout.parent / "log"
    log.write_text("")
    path = f"{checkout.parent / 'bin'}{os.pathsep}{os.environ['PATH']}"
    outer = {k: v for k, v in os.environ.items() if k not in ("INFOOPT_EXTRAS", "IMPORT_FAILS")}
    env = outer | {"PATH": path, "RUN_LOG": str(log)} | env
    subprocess.run([checkout / "run", *args], env=env, check=True, timeout=60)
    return log.read_text().splitlines()


def test_first_call_installs_and_the_next_starts_at_once(checkout):
    assert run(checkout, "test", "-k", "envs") == CREATE + INSTALL + ["python -m pytest -k envs"]
    assert run(checkout, "test") == IMPORT + ["python -m pytest"]


def test_a_newer_pyproject_is_installed_again(checkout):
    run(checkout, "test")
    later = (checkout / ".venv" / ".installed").stat().st_mtime + 10
    os.utime(checkout / "pyproject.toml", (later, later))
    assert run(checkout, "test") == INSTALL + ["python -m pytest"]


def test_a_failing_import_is_installed_again(checkout):
    run(checkout, "test")
    assert run(checkout, "test", IMPORT_FAILS="1") == IMPORT + INSTALL + ["python -m pytest"]


def test_other_extras_are_installed_again(checkout):
    run(checkout, "test")
    assert run(checkout, "test", INFOOPT_EXTRAS="test,slurm") == [
        "python -m pip install --quiet -e .[test,slurm]",
        "python -m pip check",
        "python -m pytest",
    ]


def test_smoke_runs_the_smoke_profile_with_the_arguments(checkout):
    assert run(checkout, "smoke", "--dry-run")[-1] == (
        "python -m snakemake --cores all --workflow-profile workflow/profiles/smoke --dry-run"
    )


@pytest.mark.parametrize("args", [[], ["tests"]])
def test_anything_else_is_a_usage_error(checkout, args):
    result = subprocess.run([checkout / "run", *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "usage: ./run smoke|test" in result.stderr
    assert not (checkout / ".venv").exists()
