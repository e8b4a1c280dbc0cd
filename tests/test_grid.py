"""Hyper-parameter grids: their expansion into ordinary runs, their names and their checks."""

from __future__ import annotations

import re

import pytest

from conftest import SCHEMA
from infoopt.canonical import canonical_json
from infoopt.config import ConfigError, Run, all_runs, experiment_runs, init_spec, run_spec
from infoopt.grid import grid_points, point_name
from infoopt.labels import wildcard_label
from infoopt.validate import validate_config

WILDCARD = re.compile(r"[A-Za-z0-9_-]+")


def with_grid(config: dict, grid: dict, **experiment) -> dict:
    """``config`` with an experiment ``g`` of ResNet18 and ViT, SGD and Adam, seeds 0 and 1,
    and ``grid``."""
    config["experiments"]["g"] = {
        "dataset": "cifar10",
        "archs": ["resnet18", "vit"],
        "optimizers": ["sgd", "adam"],
        "seeds": [0, 1],
        "hessian": "final",
        "grid": grid,
    } | experiment
    return config


@pytest.mark.parametrize(
    ("value", "label"),
    [(0.1, "0p1"), (5.0e-4, "0p0005"), (1.0e-5, "1e-05"), (128, "128"), (1.0, "1"), (3e7, "3e07")],
)
def test_value_labels_are_wildcard_safe(value, label):
    assert wildcard_label(value) == label
    assert WILDCARD.fullmatch(label)


def test_points_are_every_combination_named_by_sorted_axes():
    points = grid_points("sgd", {"lr": [0.1, 0.03], "batch_size": [512, 128]})
    assert points == {
        "sgd-batch_size128-lr0p03": {"batch_size": 128, "lr": 0.03},
        "sgd-batch_size128-lr0p1": {"batch_size": 128, "lr": 0.1},
        "sgd-batch_size512-lr0p03": {"batch_size": 512, "lr": 0.03},
        "sgd-batch_size512-lr0p1": {"batch_size": 512, "lr": 0.1},
    }
    assert point_name("lion_tanh_k3", {"weight_decay": 0.5}) == "lion_tanh_k3-weight_decay0p5"


def test_a_grid_expands_into_ordinary_runs(paper_config):
    grid = {"sgd": {"lr": [0.05, 0.2], "batch_size": [64, 256], "momentum": [0.9]}}
    config = validate_config(with_grid(paper_config, grid), SCHEMA)
    names = [
        "sgd-batch_size64-lr0p05-momentum0p9",
        "sgd-batch_size64-lr0p2-momentum0p9",
        "sgd-batch_size256-lr0p05-momentum0p9",
        "sgd-batch_size256-lr0p2-momentum0p9",
    ]
    assert config["experiments"]["g"]["optimizers"] == [*names, "adam"], "adam has no grid"
    runs = experiment_runs(config, "g")
    assert len(runs) == 2 * 5 * 2
    assert all(WILDCARD.fullmatch(run.optimizer) for run in runs)

    spec = run_spec(config, Run("cifar10", "vit", "sgd-batch_size256-lr0p05-momentum0p9", 1))
    # The point's lr replaces the ViT's own (arch_hparams) too; the rest is SGD's configuration.
    assert spec["hparams"] == {
        "lr": 0.05,
        "momentum": 0.9,
        "weight_decay": 5.0e-4,
        "nesterov": False,
        "dampening": 0.0,
        "foreach": None,
    }
    assert spec["training"]["batch_size"] == 256, "the point's batch size, not the ViT's 512"
    assert spec["optimizer"] == "sgd-batch_size256-lr0p05-momentum0p9"
    assert spec["algorithm"] == "sgd"
    # Every point of an architecture and seed starts from the same initial weights.
    assert {canonical_json(init_spec(config, r.dataset, r.arch, r.seed)) for r in runs} == {
        canonical_json(init_spec(config, "cifar10", arch, seed))
        for arch in ("resnet18", "vit")
        for seed in (0, 1)
    }
    # The other experiments' runs are as they were.
    assert run_spec(config, Run("cifar10", "vit", "sgd", 0))["hparams"]["lr"] == 0.03
    assert run_spec(config, Run("cifar10", "vit", "sgd", 0))["training"]["batch_size"] == 512


def test_a_grid_keeps_an_optimizers_other_arch_overrides(paper_config):
    paper_config["optimizers"]["sgd"]["arch_hparams"]["vit"] = {"lr": 0.03, "momentum": 0.5}
    config = validate_config(with_grid(paper_config, {"sgd": {"lr": [0.2, 0.4]}}), SCHEMA)
    spec = run_spec(config, Run("cifar10", "vit", "sgd-lr0p4", 0))
    assert spec["hparams"]["lr"] == 0.4 and spec["hparams"]["momentum"] == 0.5
    assert (
        run_spec(config, Run("cifar10", "resnet18", "sgd-lr0p4", 0))["hparams"]["momentum"] == 0.9
    )


def test_equivalent_grids_give_the_same_runs_and_specs(paper_config):
    import copy

    first = validate_config(
        with_grid(
            copy.deepcopy(paper_config), {"sgd": {"lr": [0.1, 0.05], "batch_size": [128, 64]}}
        ),
        SCHEMA,
    )
    second = validate_config(
        with_grid(paper_config, {"sgd": {"batch_size": [64.0, 128.0], "lr": [0.05, 0.1]}}), SCHEMA
    )
    assert experiment_runs(first, "g") == experiment_runs(second, "g")
    assert canonical_json(first["experiments"]["g"]["grid"]) == canonical_json(
        second["experiments"]["g"]["grid"]
    )
    for run in experiment_runs(first, "g"):
        assert canonical_json(run_spec(first, run)) == canonical_json(run_spec(second, run))


def test_two_experiments_with_the_same_point_share_its_run(paper_config):
    with_grid(paper_config, {"sgd": {"lr": [0.05, 0.2]}}, optimizers=["sgd"], seeds=[0])
    paper_config["experiments"]["h"] = paper_config["experiments"]["g"] | {
        "grid": {"sgd": {"lr": [0.2, 0.8]}}
    }
    config = validate_config(paper_config, SCHEMA)
    shared = Run("cifar10", "resnet18", "sgd-lr0p2", 0)
    assert shared in experiment_runs(config, "g") and shared in experiment_runs(config, "h")
    points = {"sgd-lr0p05", "sgd-lr0p2", "sgd-lr0p8"}
    grid_runs = [run for run in all_runs(config) if run.optimizer in points]
    assert len(grid_runs) == 2 * 3, "three lrs on two architectures, each run once"


def _nesterov(config: dict) -> None:
    config["optimizers"]["sgd"]["hparams"]["nesterov"] = True


def _lr_sweep(config: dict) -> None:
    config["experiments"]["g"]["lr_sweep"] = {}


def _taken(config: dict) -> None:
    config["optimizers"]["sgd-lr0p1"] = {"algorithm": "adam"}


def _unchanged(config: dict) -> None:
    pass


# name -> (grid, a further edit of the configuration, the error after "config key ").
BAD_GRIDS = {
    "empty-values": ({"sgd": {"lr": []}}, _unchanged, "grid.sgd.lr: [] should be non-empty"),
    "duplicate-values": (
        {"sgd": {"lr": [0.1, 0.1]}},
        _unchanged,
        "grid.sgd.lr: [0.1, 0.1] has non-unique elements",
    ),
    "same-name-values": (
        {"sgd": {"lr": [0.1, 0.1000001]}},
        _unchanged,
        "grid.sgd.lr: values [0.1, 0.1000001] coincide at 6 significant digits",
    ),
    "no-axis": ({"sgd": {}}, _unchanged, "grid.sgd: {} should be non-empty"),
    "no-optimizer": ({}, _unchanged, "grid: {} should be non-empty"),
    "unknown-axis": (
        {"sgd": {"momentun": [0.9]}},
        _unchanged,
        "grid.sgd.momentun: unknown axis; valid: batch_size, lr, momentum, nesterov",
    ),
    "optimizer-not-in-experiment": (
        {"lion": {"lr": [1.0e-4]}},
        _unchanged,
        "grid.lion: not one of the experiment's optimizers (sgd, adam)",
    ),
    "out-of-range": (
        {"adam": {"lr": [1.0e-3, -1.0e-3]}},
        _unchanged,
        "grid.adam.lr: adam: lr must be a number >= 0, got -0.001 (at lr -0.001, on resnet18)",
    ),
    "text-value": (
        {"sgd": {"lr": ["1e-3"]}},
        _unchanged,
        "grid.sgd.lr.0: '1e-3' is not of type 'number'",
    ),
    "zero-batch": (
        {"sgd": {"batch_size": [0, 64]}},
        _unchanged,
        "grid.sgd.batch_size.0: 0 is less than the minimum of 1",
    ),
    "fractional-batch": (
        {"sgd": {"batch_size": [64, 96.5]}},
        _unchanged,
        "grid.sgd.batch_size.1: 96.5 is not of type 'integer'",
    ),
    "wrong-type-axis": (
        {"sgd": {"nesterov": [0, 1]}},
        _unchanged,
        "grid.sgd.nesterov: sgd: nesterov must be true or false, got 0",
    ),
    "combination": (
        {"sgd": {"momentum": [0.0, 0.9]}},
        _nesterov,
        "grid.sgd: sgd: Nesterov momentum requires a momentum and zero dampening (at momentum 0",
    ),
    "with-lr-sweep": (
        {"sgd": {"lr": [0.1]}},
        _lr_sweep,
        "grid: an experiment with a grid cannot have an lr_sweep",
    ),
    "name-taken": (
        {"sgd": {"lr": [0.1]}},
        _taken,
        "grid.sgd: its point 'sgd-lr0p1' has the name of another optimizer under optimizers",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_GRIDS))
def test_a_bad_grid_is_named_in_one_line(paper_config, name):
    grid, edit, message = BAD_GRIDS[name]
    config = with_grid(paper_config, grid)
    edit(config)
    with pytest.raises(ConfigError) as raised:
        validate_config(config, SCHEMA)
    text = str(raised.value)
    assert "\n" not in text
    assert text.startswith(f"config key experiments.g.{message}"), text


def test_an_axis_of_one_value_fixes_that_setting(paper_config):
    grid = {"adam": {"lr": [1.0e-3, 3.0e-3], "weight_decay": [5.0e-4]}}
    config = validate_config(with_grid(paper_config, grid), SCHEMA)
    names = config["experiments"]["g"]["optimizers"]
    assert names == ["sgd", "adam-lr0p001-weight_decay0p0005", "adam-lr0p003-weight_decay0p0005"]
    spec = run_spec(config, Run("cifar10", "vit", names[2], 0))
    assert spec["hparams"]["weight_decay"] == 5.0e-4 and spec["hparams"]["lr"] == 3.0e-3


def test_config_yaml_declares_the_grid_its_readme_costs(paper_config):
    config = validate_config(paper_config, SCHEMA)
    runs = experiment_runs(config, "grid")
    assert len(runs) == 2 * 3 * 2 * 2
    assert {run_spec(config, run)["training"]["batch_size"] for run in runs} == {128, 512}
    assert {run_spec(config, run)["training"]["epochs"] for run in runs} == {200}


def test_the_smoke_grid_overrides_config_yamls(smoke_config):
    config = validate_config(smoke_config, SCHEMA)
    assert len(experiment_runs(config, "grid")) == 5


@pytest.mark.parametrize("profile", ["paper", "smoke"])
def test_the_points_at_the_papers_settings_are_the_papers_runs(request, profile):
    """Their store key leaves the optimizer's name out, so the paper's SGD and Adam runs are
    trained (and measured) once for both experiments."""
    from infoopt.records import RunSpec
    from infoopt.stored_runs import result_spec

    config = validate_config(request.getfixturevalue(f"{profile}_config"), SCHEMA)
    batch = 128 if profile == "paper" else 64
    points = {
        "sgd": f"sgd-batch_size{batch}-lr0p1-weight_decay0p0005",
        "adam": f"adam-batch_size{batch}-lr0p001-weight_decay0",
    }
    dataset = config["experiments"]["grid"]["dataset"]

    def identity(optimizer):
        return result_spec(
            RunSpec.from_dict(run_spec(config, Run(dataset, "resnet18", optimizer, 0)))
        )

    for optimizer, point in points.items():
        assert identity(optimizer) == identity(point), point
    assert identity(points["sgd"].replace("lr0p1", "lr0p03")) != identity("sgd")


def test_a_point_at_the_papers_settings_is_trained_after_the_papers_run(smoke_config):
    """The workflow orders the two names of one run, so the second is restored from the store
    rather than waiting on a device for the first to finish."""
    from infoopt.stored_runs import earlier_same_run

    config = validate_config(smoke_config, SCHEMA)
    sgd = Run("digits", "resnet18", "sgd", 0)
    point = Run("digits", "resnet18", "sgd-batch_size64-lr0p1-weight_decay0p0005", 0)
    assert earlier_same_run(config, point) == sgd
    assert earlier_same_run(config, sgd) is None
    assert earlier_same_run(config, Run("digits", "resnet18", "sgd", 1)) is None
    other = Run("digits", "resnet18", "sgd-batch_size64-lr0p03-weight_decay0p0005", 0)
    assert earlier_same_run(config, other) is None
    assert earlier_same_run(config, Run("digits", "resnet18", "lion", 0)) is None, "swept lr"
