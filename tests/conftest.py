"""Shared fixtures: the repository's paths and a prepared digits dataset."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


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
