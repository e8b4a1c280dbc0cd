"""The linters, at the versions pinned in pyproject.toml's `test` extra, pass on the tree:
`ruff check`, `ruff format --check` (notebooks included) and `snakefmt --check` on the rules."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from importlib.metadata import version

import pytest
from packaging.requirements import Requirement

from conftest import REPO

PINS = {
    requirement.name: requirement.specifier
    for requirement in map(
        Requirement,
        tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"][
            "test"
        ],
    )
}
# --no-cache: a test run writes nothing into the repository.
COMMANDS = {
    "ruff check": ["ruff", "check", "--no-cache", "."],
    "ruff format": ["ruff", "format", "--check", "--no-cache", "."],
    "snakefmt": ["snakefmt", "--check", "Snakefile", "workflow/rules"],
}


@pytest.mark.parametrize("tool", ["ruff", "snakefmt"])
def test_linter_is_the_pinned_version(tool):
    pin = PINS[tool]
    assert str(pin).startswith("=="), f"pyproject.toml pins {tool} exactly, not {pin}"
    assert version(tool) in pin, f"{tool} {version(tool)} is installed, pyproject pins {pin}"


@pytest.mark.parametrize("name", COMMANDS)
def test_linter_passes(name):
    result = subprocess.run(
        [sys.executable, "-m", *COMMANDS[name]],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"{name} failed:\n{result.stdout}\n{result.stderr}"
