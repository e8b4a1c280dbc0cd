"""Hyper-parameter grids: an experiment's ``grid`` expanded into ordinary runs.

An experiment may give some of its optimizers a grid: values of the algorithm's
hyper-parameters and of the training batch size (config.yaml)::

    grid:
      sgd: {lr: [0.05, 0.1], batch_size: [64, 128]}

Every combination of the values, a *point*, becomes an optimizer entry of its own in the
resolved configuration, named after its optimizer and its values (:func:`point_name`:
``sgd-batch_size64-lr0p1``), and the experiment's ``optimizers`` list names the points in the
optimizer's place. So a point is an ordinary run, ``Run(dataset, arch, point name, seed)``:
trained, measured, collected and stored like any other, with the initial weights of its
(dataset, arch, seed), shared by every point. A point's value replaces the optimizer's own
(``hparams`` and every ``arch_hparams``); ``batch_size`` replaces the architecture's
(``training.batch_size`` of the entry, which :func:`infoopt.config.run_spec` applies).

An axis of one value fixes that setting: it is in every point's name and spec, but no two
points differ in it. Values are sorted, so the order they are written in changes nothing.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Mapping, Sequence

from infoopt.config import ConfigError
from infoopt.labels import clashing_labels, wildcard_label

# The axes that are training settings; every other axis is a hyper-parameter of the algorithm.
TRAINING_AXES = ("batch_size",)


def point_name(optimizer: str, point: Mapping[str, float]) -> str:
    """The optimizer name of a grid point: ``optimizer`` and each axis with its value, axes in
    alphabetical order."""
    return "-".join(
        [optimizer, *(f"{axis}{wildcard_label(point[axis])}" for axis in sorted(point))]
    )


def grid_points(optimizer: str, axes: Mapping[str, Sequence[float]]) -> dict[str, dict]:
    """Name -> point (axis -> value) of every combination of the axes' values, in the order of
    sorted axes and sorted values."""
    names = sorted(axes)
    points = (
        dict(zip(names, values, strict=True))
        for values in itertools.product(*(sorted(axes[axis]) for axis in names))
    )
    return {point_name(optimizer, point): point for point in points}


def expand_grids(config: dict, checks: bool = True) -> None:
    """Check every experiment's grid and expand it in place (see the module); a ConfigError
    names the bad key. ``config`` is resolved (:func:`infoopt.config.resolve_config`, whose
    ``checks`` this passes on)."""
    for name, exp in config["experiments"].items():
        grid = exp.get("grid")
        if grid is None:
            continue
        where = f"config key experiments.{name}.grid"
        if exp.get("lr_sweep") is not None:
            raise ConfigError(
                f"{where}: an experiment with a grid cannot have an lr_sweep (the grid sets "
                "each run's hyper-parameters; put lr on the grid)"
            )
        for optimizer, axes in grid.items():
            if optimizer not in exp["optimizers"]:
                raise ConfigError(
                    f"{where}.{optimizer}: not one of the experiment's optimizers "
                    f"({', '.join(exp['optimizers'])})"
                )
            _check_axes(f"{where}.{optimizer}", config["optimizers"][optimizer], axes)
            grid[optimizer] = {axis: sorted(values) for axis, values in axes.items()}
        expanded = []
        for optimizer in exp["optimizers"]:
            if optimizer not in grid:
                expanded.append(optimizer)
                continue
            for point_key, point in grid_points(optimizer, grid[optimizer]).items():
                entry = _point_entry(
                    config, exp["archs"], optimizer, point, f"{where}.{optimizer}", checks
                )
                if point_key in config["optimizers"] and config["optimizers"][point_key] != entry:
                    raise ConfigError(
                        f"{where}.{optimizer}: its point {point_key!r} has the name of "
                        "another optimizer under optimizers; rename that one"
                    )
                config["optimizers"][point_key] = entry
                expanded.append(point_key)
        exp["optimizers"] = expanded


def _check_axes(where: str, optimizer: dict, axes: Mapping[str, Sequence[float]]) -> None:
    """A ConfigError unless every axis is a training axis or a hyper-parameter of the
    optimizer's algorithm, and the values of each have distinct names."""
    from infoopt.optim import optimizer_factory

    if "groups" in optimizer:
        raise ConfigError(
            f"{where}: a grid over an optimizer with parameter groups is not supported"
        )
    valid = (*TRAINING_AXES, *optimizer_factory(optimizer["algorithm"]).hparams)
    for axis, values in axes.items():
        if axis not in valid:
            raise ConfigError(f"{where}.{axis}: unknown axis; valid: {', '.join(valid)}")
        if clashing_labels(values, wildcard_label):
            raise ConfigError(
                f"{where}.{axis}: values {values} coincide at 6 significant digits, "
                "which the run names keep"
            )


def _point_entry(
    config: dict,
    archs: Sequence[str],
    optimizer: str,
    point: Mapping[str, float],
    where: str,
    checks: bool,
) -> dict:
    """The optimizer entry of one point, its hyper-parameters checked on every architecture
    of the experiment."""
    from infoopt.optim import HyperParameterError, optimizer_factory

    base = config["optimizers"][optimizer]
    values = {axis: value for axis, value in point.items() if axis not in TRAINING_AXES}
    entry = {
        "algorithm": base["algorithm"],
        "hparams": base["hparams"] | values,
        "arch_hparams": {
            arch: {key: value for key, value in override.items() if key not in values}
            for arch, override in base["arch_hparams"].items()
        },
    }
    training = {axis: point[axis] for axis in TRAINING_AXES if axis in point}
    if training:
        entry["training"] = training
    for arch in archs:
        try:
            optimizer_factory(base["algorithm"]).resolve(
                entry["hparams"] | entry["arch_hparams"].get(arch, {}), construct=checks
            )
        except HyperParameterError as error:
            key = f"{where}.{error.name}" if error.name in values else where
            at = ", ".join(f"{axis} {value:g}" for axis, value in sorted(point.items()))
            raise ConfigError(f"{key}: {error} (at {at}, on {arch})") from None
    return copy.deepcopy(entry)
