"""The configuration: schema validation, defaults, cross-references and run specs."""

from __future__ import annotations

import ast
import json
import subprocess
import sys

import pytest

from conftest import REPO, SCHEMA
from infoopt.config import ConfigError, Run, experiment_runs, run_spec
from infoopt.validate import validate_config


def test_paper_config_is_valid_and_gets_defaults(paper_config):
    config = validate_config(paper_config, SCHEMA)
    assert config["training"]["schedule"] == "cosine"
    assert config["training"]["checkpoints"] == [0.0, 0.01, 0.25, 0.5, 0.75, 1.0]
    assert config["archs"]["resnet18"]["augment"] == {"crop_padding": 4, "flip": True}
    # The registries' defaults are filled too: equivalent configurations give equal specs.
    assert config["archs"]["vit"]["options"]["dim"] == 512
    assert config["optimizers"]["adam"]["hparams"]["betas"] == (0.9, 0.999)
    assert "augment" not in paper_config["archs"]["resnet18"], "the caller's dict is not modified"


def test_defaults_are_independent_copies(paper_config):
    config = validate_config(paper_config, SCHEMA)
    config["archs"]["resnet18"]["augment"]["flip"] = False
    assert config["archs"]["vit"]["augment"]["flip"] is True


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (lambda c: c.update(trainig={}), "trainig"),
        (lambda c: c["archs"]["resnet18"].update(epoch=3), "archs.resnet18"),
        (lambda c: c["archs"]["resnet18"].update(epochs="200"), "archs.resnet18.epochs"),
        (lambda c: c["training"].update(precision="fp16"), "training.precision"),
        (lambda c: c["experiments"]["paper"].update(seeds=[0, 0]), "experiments.paper.seeds"),
        (lambda c: c["datasets"]["cifar10"].update(md5="xyz"), "datasets.cifar10.md5"),
    ],
)
def test_schema_errors_name_the_key(paper_config, edit, named):
    edit(paper_config)
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        validate_config(paper_config, SCHEMA)


def test_unknown_key_is_named(paper_config):
    paper_config["archs"]["resnet18"]["epoch"] = 3
    with pytest.raises(ConfigError, match="'epoch' was unexpected"):
        validate_config(paper_config, SCHEMA)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c["experiments"]["paper"].update(archs=["resnet50"]), "'resnet50'.*resnet18"),
        (
            lambda c: c["experiments"]["paper"].update(dataset="no_such_set"),
            "'no_such_set'.*cifar10",
        ),
        (lambda c: c["optimizers"]["sgd"].update(algorithm="sgdw"), "'sgdw'.*adam"),
        (lambda c: c["archs"]["vit"].update(model="vit_b16"), "archs.vit.model"),
        (lambda c: c["optimizers"]["adam"]["arch_hparams"].update(mlp={}), "arch_hparams"),
    ],
)
def test_references_must_exist(paper_config, edit, message):
    edit(paper_config)
    with pytest.raises(ConfigError, match=message):
        validate_config(paper_config, SCHEMA)


def test_runs_and_specs_of_the_paper(paper_config):
    config = validate_config(paper_config, SCHEMA)
    runs = experiment_runs(config, "paper")
    assert len(runs) == 4
    assert Run("cifar10", "vit", "sgd", 0) in runs
    vit_sgd = run_spec(config, Run("cifar10", "vit", "sgd", 0))
    assert vit_sgd["hparams"] == {
        "lr": 0.03,
        "momentum": 0.9,
        "weight_decay": 5.0e-4,
        "nesterov": False,
        "dampening": 0.0,
        "foreach": None,
    }
    assert vit_sgd["training"]["batch_size"] == 512
    resnet_adam = run_spec(config, Run("cifar10", "resnet18", "adam", 0))
    assert resnet_adam["hparams"]["lr"] == 1.0e-3
    assert resnet_adam["model"] == {
        "name": "resnet18",
        "num_classes": 10,
        "in_channels": 3,
        "image_size": 32,
        "options": {"width": 64, "blocks": [2, 2, 2, 2]},
    }


def test_an_optimizer_packages_version_enters_the_run_and_nothing_else(paper_config, monkeypatch):
    """Upgrading the package of an optimizer named by import path retrains its runs (their spec,
    hence their store key, changes); the runs of every other optimizer keep theirs."""
    import infoopt.imports
    from infoopt.store import result_key

    paper_config["optimizers"]["radam"] = {"algorithm": "torch.optim.RAdam"}
    paper_config["experiments"]["paper"]["optimizers"].append("radam")
    config = validate_config(paper_config, SCHEMA)
    runs = [Run("cifar10", "vit", name, 0) for name in ("sgd", "radam", "muon")]
    before = [run_spec(config, run) for run in runs]
    assert "package" not in before[0]
    assert before[1]["package"] == infoopt.imports.distribution_of("torch.optim.RAdam")
    assert before[1]["package"]["distribution"] == "torch"
    assert before[2]["groups"]["hidden"]["package"]["distribution"] == "torch"
    assert "package" not in before[2]["groups"]["rest"]

    real = infoopt.imports.distribution_of
    monkeypatch.setattr(
        infoopt.imports, "distribution_of", lambda path: real(path) | {"version": "99.0"}
    )
    after = [run_spec(config, run) for run in runs]
    keys = [[result_key("train", spec, {}) for spec in specs] for specs in (before, after)]
    assert [a == b for a, b in zip(*keys, strict=True)] == [True, False, False]


def test_config_does_not_import_the_sweeps():
    """infoopt.sweep builds on infoopt.config: the dependency goes one way only."""
    tree = ast.parse((REPO / "src/infoopt/config.py").read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    assert not {name for name in imported if name and name.startswith("infoopt.sweep")}


def test_smoke_profile_is_valid(smoke_config):
    config = validate_config(smoke_config, SCHEMA)
    spec = run_spec(config, Run("digits", "vit", "adam", 1))
    assert spec["model"]["in_channels"] == 1 and spec["model"]["image_size"] == 8
    assert spec["hparams"]["lr"] == 3.0e-3
    assert len(experiment_runs(config, "paper")) == 8


UNCHECKED = """
import json, sys
import yaml
from snakemake.utils import update_config
from infoopt.validate import validate_config

config = yaml.safe_load(open("config.yaml"))
update_config(config, yaml.safe_load(open("workflow/profiles/smoke/experiment.yaml")))
schema = "workflow/schemas/config.schema.yaml"
print(json.dumps({
    "config": validate_config(config, schema, checks=False),
    "imported": sorted({"timm", "torch._dynamo"} & set(sys.modules)),
}))
"""


def test_a_checked_configuration_resolves_the_same_without_the_checks(smoke_config):
    """What a cluster job's own parse resolves (checks off: nothing built, neither timm nor
    torch._dynamo imported) is what the main process checked and resolved."""
    result = subprocess.run(
        [sys.executable, "-c", UNCHECKED], cwd=REPO, capture_output=True, text=True, check=True
    )
    unchecked = json.loads(result.stdout)
    assert unchecked["imported"] == []
    checked = json.loads(json.dumps(validate_config(smoke_config, SCHEMA)))
    assert unchecked["config"] == checked


def test_the_checks_that_build_are_skipped_only_when_asked(smoke_config):
    """A value only the optimizer's constructor refuses: an error checked, taken unchecked."""
    smoke_config["optimizers"]["radam"]["hparams"]["betas"] = [1.5, 0.9]
    with pytest.raises(ConfigError, match="optimizers.radam.hparams.betas"):
        validate_config(smoke_config, SCHEMA)
    resolved = validate_config(smoke_config, SCHEMA, checks=False)
    assert resolved["optimizers"]["radam"]["hparams"]["betas"] == [1.5, 0.9]


def test_schema_hessian_defaults_are_the_code_defaults():
    """One source of truth: the schema documents HessianOptions; their defaults agree."""
    import dataclasses

    import yaml

    from infoopt.hessian.options import CHOICES, HessianOptions

    schema = yaml.safe_load(SCHEMA.read_text())["properties"]["hessian"]["properties"]
    fields = {f.name: f for f in dataclasses.fields(HessianOptions)}
    # The seed is the run's, not a configuration value; shards and device say how a workflow
    # does the work.
    execution = {"shards", "device"}
    assert set(schema) == set(fields) - {"seed"} | execution
    for name in execution:
        del schema[name]
    for name, prop in schema.items():
        assert prop["default"] == fields[name].default, name
        if name in CHOICES:
            assert tuple(prop["enum"]) == CHOICES[name], name
