"""The whole configuration check, above the modules whose parts it checks.

:mod:`infoopt.config` checks and resolves the configuration; :mod:`infoopt.grid` expands the
hyper-parameter grids into runs, and :mod:`infoopt.sweep` builds on the resolved runs and checks
the learning-rate sweeps. The dependency goes one way, so the check of all three lives here.
"""

from __future__ import annotations

from pathlib import Path

from infoopt.config import resolve_config
from infoopt.grid import expand_grids
from infoopt.sweep import check_sweeps


def validate_config(config: dict, schema_path: str | Path, *, checks: bool = True) -> dict:
    """A validated copy of ``config`` with defaults filled in, grids expanded and sweeps
    checked; a ConfigError names a bad key. ``checks`` False resolves the same configuration
    without building any model or optimizer (see :func:`infoopt.config.resolve_config`)."""
    config = resolve_config(config, schema_path, checks=checks)
    expand_grids(config, checks)
    check_sweeps(config)
    return config
