"""Every bad value is rejected by `snakemake -n`, before any job exists, in one line that names
the config key, and a finished workflow's results are left exactly as they were.

Snakemake's parse hands the layered configuration to infoopt.validate.validate_config and prints
its ConfigError as that line (workflow/rules/common.smk): every bad value is checked there,
in-process, and one value of each kind of check (the schema, an optimizer's hyper-parameters, a
model's options, the lr sweep) also through a dry run of the finished smoke workflow, which
costs a parse of the workflow, seconds, each."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from conftest import SCHEMA, SMOKE, copy_smoke, snakemake

pytestmark = pytest.mark.workflow

EXPERIMENT = "workflow/profiles/smoke/experiment.yaml"


def _adam(**hparams):
    return {"optimizers": {"adam": {"algorithm": "adam", "hparams": hparams}}}


def _sgd(**hparams):
    return {"optimizers": {"sgd": {"algorithm": "sgd", "hparams": {"lr": 0.1, **hparams}}}}


def _radam(**hparams):
    return {"optimizers": {"radam_x": {"algorithm": "torch.optim.RAdam", "hparams": hparams}}}


# Muon for the hidden matrices, AdamW for the rest.
MUON = {
    "hidden": {"algorithm": "torch.optim.Muon", "ndim": [2], "exclude": ["head.*", "fc.*"]},
    "rest": {"algorithm": "adamw"},
}


def _muon(groups):
    """Optimizer muon_x with these groups, in the paper experiment (so checked on its models)."""
    return {
        "experiments": {"paper": {"optimizers": ["sgd", "muon_x"]}},
        "optimizers": {"muon_x": {"groups": groups}},
    }


def _vit(**options):
    return {"archs": {"vit": {"model": "vit", "options": options}}}


TINY_TIMM_VIT = {
    "name": "vit_tiny_patch16_224",
    "img_size": 8,
    "patch_size": 2,
    "embed_dim": 32,
    "depth": 2,
    "num_heads": 2,
}


def _timm(**options):
    """A timm model, run by the paper experiment in place of the smoke run's ViT."""
    return {
        "archs": {"tvit": {"model": "timm", "options": options}},
        "experiments": {"paper": {"archs": ["resnet18", "tvit"]}},
    }


BAD = {
    "negative-lr": (
        _adam(lr=-1.0e-3),
        "optimizers.adam.hparams.lr: adam: lr must be a number >= 0",
    ),
    "string-lr": (_adam(lr="1e-3"), "optimizers.adam.hparams.lr: adam: lr must be a finite"),
    "negative-momentum": (_sgd(momentum=-0.9), "optimizers.sgd.hparams.momentum: sgd: momentum"),
    "beta-one": (_adam(betas=[1.0, 0.9]), "optimizers.adam.hparams.betas: adam: betas[0]"),
    "negative-eps": (
        _adam(eps=-1.0),
        "optimizers.adam.hparams.eps: adam: eps must be a number >= 0",
    ),
    "negative-wd": (_sgd(weight_decay=-1.0), "optimizers.sgd.hparams.weight_decay: sgd"),
    "zero-kappa": (
        {"optimizers": {"lion_tanh_k1": {"algorithm": "lion_tanh", "hparams": {"kappa": 0.0}}}},
        "optimizers.lion_tanh_k1.hparams.kappa: lion_tanh: kappa must be a number > 0",
    ),
    "beta3-one": (
        {"optimizers": {"lion_bayes": {"algorithm": "lion_bayes", "hparams": {"beta3": 1.0}}}},
        "optimizers.lion_bayes.hparams.beta3: lion_bayes: beta3 must be a number in [0, 1)",
    ),
    "unknown-hparam": (
        _sgd(momentun=0.9),
        "optimizers.sgd.hparams.momentun: unknown hyper-parameter(s) 'momentun' for optimizer "
        "'sgd'; valid: lr, momentum",
    ),
    "arch-override": (
        {"optimizers": {"sgd": {"algorithm": "sgd", "arch_hparams": {"vit": {"lr": -0.3}}}}},
        "optimizers.sgd.arch_hparams.vit.lr: sgd: lr must be a number >= 0",
    ),
    "nesterov-without-momentum": (
        _sgd(nesterov=True, momentum=0.0),
        "optimizers.sgd.hparams: sgd: Nesterov momentum requires a momentum",
    ),
    "torch-optimizer-value": (
        _radam(betas=[1.5, 0.9]),
        "optimizers.radam_x.hparams.betas: torch.optim.RAdam: Invalid beta parameter at index 0",
    ),
    "torch-optimizer-unknown-hparam": (
        _radam(momentum=0.9),
        "optimizers.radam_x.hparams.momentum: unknown hyper-parameter(s) 'momentum' for "
        "optimizer 'torch.optim.RAdam'; valid: lr, betas, eps, weight_decay",
    ),
    "torch-optimizer-type": (
        {"optimizers": {"muon_x": {"algorithm": "torch.optim.Muon", "hparams": {"ns_steps": 2.5}}}},
        "optimizers.muon_x.hparams.ns_steps: torch.optim.Muon: ns_steps must be an integer",
    ),
    "no-such-class": (
        {"optimizers": {"radam_x": {"algorithm": "torch.optim.NoSuchThing"}}},
        "optimizers.radam_x.algorithm: cannot import 'torch.optim.NoSuchThing': 'torch.optim' "
        "has no attribute 'NoSuchThing'",
    ),
    "no-such-package": (
        {"optimizers": {"radam_x": {"algorithm": "nosuchpackage.Opt"}}},
        "optimizers.radam_x.algorithm: cannot import 'nosuchpackage.Opt': no module named "
        "'nosuchpackage'",
    ),
    "not-an-optimizer": (
        {"optimizers": {"radam_x": {"algorithm": "torch.nn.Linear"}}},
        "optimizers.radam_x.algorithm: 'torch.nn.Linear' is not a torch.optim.Optimizer subclass",
    ),
    "unmatched-parameter": (
        _muon({"hidden": {"algorithm": "torch.optim.Muon", "ndim": [2]}}),
        "optimizers.muon_x.groups: parameter 'stem.0.weight' (4-D) matches no group",
    ),
    "parameter-in-two-groups": (
        _muon({**MUON, "norms": {"algorithm": "sgd", "hparams": {"lr": 0.1}, "ndim": [1, 2]}}),
        "optimizers.muon_x.groups.norms: parameter 'patch_embedding.weight' matches groups "
        "'hidden' and 'norms' (in vit on digits)",
    ),
    "muon-on-vectors": (
        _muon({**MUON, "hidden": {**MUON["hidden"], "ndim": [1, 2]}}),
        "optimizers.muon_x.groups.hidden: torch.optim.Muon cannot train its parameters in "
        "resnet18: Muon only supports 2D parameters",
    ),
    "group-hparam": (
        _muon({**MUON, "rest": {**MUON["rest"], "arch_hparams": {"vit": {"lr": -1.0}}}}),
        "optimizers.muon_x.groups.rest.arch_hparams.vit.lr: adamw: lr must be a number >= 0",
    ),
    "groups-and-algorithm": (
        {"optimizers": {"muon_x": {"algorithm": "adamw", "groups": MUON}}},
        "optimizers.muon_x.algorithm: an optimizer with groups gives each group its algorithm",
    ),
    "option-type": (_vit(dim="wide"), "archs.vit.options.dim: model 'vit': option dim must be int"),
    "option-combination": (
        _vit(patch_size=3),
        "archs.vit.options: model 'vit' on {'num_classes': 10, 'in_channels': 1, "
        "'image_size': 8}: image_size 8 is not divisible by patch_size 3",
    ),
    "unknown-option": (
        {"archs": {"resnet18": {"model": "resnet18", "options": {"depth": 3}}}},
        "archs.resnet18.options.depth: unknown option(s) 'depth' for model 'resnet18'",
    ),
    "no-final-checkpoint": (
        {"training": {"checkpoints": [0.0, 0.5]}},
        "training.checkpoints: must contain 1.0",
    ),
    "unsorted-checkpoints": (
        {"training": {"checkpoints": [1.0, 0.5]}},
        "training.checkpoints: must be in increasing order",
    ),
    "same-checkpoint-file": (
        {"training": {"checkpoints": [0.0, 0.001, 1.0]}},
        "training.checkpoints: [0.0, 0.001, 1.0] name the same file",
    ),
    "checkpoint-past-end": (
        {"training": {"checkpoints": [0.0, 1.5]}},
        "training.checkpoints.1: 1.5 is greater than the maximum of 1",
    ),
    "unknown-dataset": (
        {"experiments": {"paper": {"dataset": "no_such_set"}}},
        "experiments.paper.dataset: unknown 'no_such_set'; known: cifar10, cifar100, digits, "
        "fashion_mnist, kmnist, mnist, stl10, svhn",
    ),
    "md5-of-several-files": (
        {"experiments": {"paper": {"dataset": "mnist"}}, "datasets": {"mnist": {"md5": "0" * 32}}},
        "datasets.mnist.md5: mnist is 4 files, each checked against its known md5",
    ),
    "md5-not-the-known-one": (
        {"datasets": {"cifar100": {"md5": "0" * 32}}},
        f"datasets.cifar100.md5: {'0' * 32} is not the md5 of cifar100's archive",
    ),
    "timm-unknown-name": (
        _timm(name="no_such_model"),
        "archs.tvit.options.name: model 'timm': unknown timm model 'no_such_model'",
    ),
    "timm-unknown-option": (
        _timm(**TINY_TIMM_VIT, no_such_option=1),
        "archs.tvit.options.no_such_option: model 'timm' takes no option no_such_option",
    ),
    "timm-shape": (
        _timm(**{**TINY_TIMM_VIT, "img_size": 16}),
        "archs.tvit.options: model 'timm' on {'num_classes': 10, 'in_channels': 1, "
        "'image_size': 8}: AssertionError: Input height (8) doesn't match model (16).",
    ),
    "factory-missing": (
        {"archs": {"vit": {"model": "no_such_package.models:net", "options": {}}}},
        "archs.vit.model: model 'no_such_package.models:net': cannot import",
    ),
    "unknown-optimizer": (
        {"experiments": {"paper": {"optimizers": ["sgd", "adamx"]}}},
        "experiments.paper.optimizers: unknown 'adamx'",
    ),
    "string-epochs": (
        {"archs": {"vit": {"model": "vit", "epochs": "200"}}},
        "archs.vit.epochs: '200' is not of type 'integer'",
    ),
    "zero-k": ({"hessian": {"max_k": 0}}, "hessian.max_k: 0 is less than the minimum of 1"),
    "coinciding-sweep": (
        {"experiments": {"lion_ablation": {"lr_sweep": {"multipliers": [1.0, 1.0000001]}}}},
        "experiments.lion_ablation.lr_sweep.multipliers: candidate lrs of lion on resnet18 "
        "coincide",
    ),
    "precision": (
        {"training": {"precision": "fp16"}},
        "training.precision: 'fp16' is not one of ['auto', 'fp32', 'bf16']",
    ),
    "misspelt-section": ({"trainig": {}}, "<top level>: Additional properties are not allowed"),
    "md5": ({"datasets": {"cifar10": {"md5": "xyz"}}}, "datasets.cifar10.md5: 'xyz' does not"),
}


def results_state(workdir: Path) -> dict[str, tuple[int, int, int]]:
    return {
        str(p.relative_to(workdir)): (p.stat().st_size, p.stat().st_mtime_ns, p.stat().st_ino)
        for p in sorted((workdir / "results").rglob("*"))
    }


THROUGH_SNAKEMAKE = (
    "misspelt-section",
    "arch-override",
    "option-combination",
    "coinciding-sweep",
    "timm-unknown-name",
    "md5-of-several-files",
)


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_value_is_named_in_one_line(name, smoke_config):
    from snakemake.utils import update_config

    from infoopt.config import ConfigError
    from infoopt.validate import validate_config

    bad, message = BAD[name]
    update_config(smoke_config, bad)
    with pytest.raises(ConfigError) as error:
        validate_config(smoke_config, SCHEMA)
    assert str(error.value).startswith(f"config key {message}")
    assert "\n" not in str(error.value)


@pytest.fixture(scope="module")
def workdir(smoke, tmp_path_factory):
    """A copy of the finished smoke workflow: dry runs write Snakemake's records."""
    return copy_smoke(smoke, tmp_path_factory.mktemp("dry-runs"))


@pytest.fixture(scope="module")
def untouched(workdir):
    return results_state(workdir)


@pytest.fixture(scope="module")
def dry_runs(workdir, untouched, tmp_path_factory):
    """Each bad configuration's dry-run, two at a time: each is one single-threaded parse."""
    folder = tmp_path_factory.mktemp("bad")

    def dry_run(name):
        bad = folder / f"{name}.yaml"
        bad.write_text(yaml.safe_dump(BAD[name][0]))
        return snakemake(workdir, *SMOKE, "--dry-run", "--configfile", EXPERIMENT, bad, check=False)

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(THROUGH_SNAKEMAKE, pool.map(dry_run, THROUGH_SNAKEMAKE), strict=True))


@pytest.mark.parametrize("name", THROUGH_SNAKEMAKE)
def test_bad_value_stops_the_dry_run_in_one_line(name, workdir, untouched, dry_runs):
    result, message = dry_runs[name], BAD[name][1]
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if "invalid configuration" in line]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"invalid configuration: config key {message}"), lines[0]
    assert "Traceback" not in result.stderr
    assert results_state(workdir) == untouched
