"""The experiment configuration: validation against the schema, and the runs it defines.

Snakemake (``workflow/rules/common.smk``) and the tests both go through
:func:`validate_config`, so a wrong key stops the workflow before any job starts,
with a message that names the key.
"""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml


class ConfigError(ValueError):
    """A configuration that does not describe a runnable experiment."""


def _with_defaults(validator_class: type) -> type:
    """A validator that fills each missing property with a copy of its schema default."""
    check_properties = validator_class.VALIDATORS["properties"]

    def properties(validator, props, instance, schema):
        if isinstance(instance, dict):
            for name, subschema in props.items():
                if "default" in subschema and name not in instance:
                    instance[name] = copy.deepcopy(subschema["default"])
        yield from check_properties(validator, props, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": properties})


def _key_path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(part) for part in error.absolute_path) or "<top level>"


def validate_config(config: dict, schema_path: str | Path) -> dict:
    """A validated copy of ``config`` with defaults filled in; a ConfigError names a bad key."""
    config = copy.deepcopy(config)
    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = _with_defaults(jsonschema.Draft202012Validator)(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is not None:
        raise ConfigError(f"config key {_key_path(error)}: {error.message}")
    _check_references(config)
    # Imported here: infoopt.sweep builds on this module.
    from infoopt.sweep import check_sweeps

    check_sweeps(config)
    return config


def _check_references(config: dict) -> None:
    # Imported here: the registries pull in torch, which the schema check itself does not need.
    from infoopt.data import DATASETS
    from infoopt.models import MODELS
    from infoopt.optim import OPTIMIZERS

    def require(name: str, known, where: str) -> None:
        if name not in known:
            raise ConfigError(
                f"config key {where}: unknown {name!r}; known: {', '.join(sorted(known))}"
            )

    for exp_name, exp in config["experiments"].items():
        require(exp["dataset"], DATASETS, f"experiments.{exp_name}.dataset")
        for arch in exp["archs"]:
            require(arch, config["archs"], f"experiments.{exp_name}.archs")
        for optimizer in exp["optimizers"]:
            require(optimizer, config["optimizers"], f"experiments.{exp_name}.optimizers")
    for name in config["datasets"]:
        require(name, DATASETS, f"datasets.{name}")
    for name, arch in config["archs"].items():
        require(arch["model"], MODELS, f"archs.{name}.model")
    for name, opt in config["optimizers"].items():
        require(opt["algorithm"], OPTIMIZERS, f"optimizers.{name}.algorithm")
        for arch in opt["arch_hparams"]:
            require(arch, config["archs"], f"optimizers.{name}.arch_hparams")


@dataclass(frozen=True)
class Run:
    """One training run: the wildcards of its output paths."""

    dataset: str
    arch: str
    optimizer: str
    seed: int

    @property
    def directory(self) -> str:
        return f"results/runs/{self.dataset}/{self.arch}/{self.optimizer}/seed{self.seed}"


def experiment_runs(config: dict, experiment: str) -> list[Run]:
    exp = config["experiments"][experiment]
    return [
        Run(exp["dataset"], arch, optimizer, seed)
        for arch, optimizer, seed in itertools.product(
            exp["archs"], exp["optimizers"], exp["seeds"]
        )
    ]


def all_runs(config: dict) -> Iterator[Run]:
    seen = set()
    for experiment in config["experiments"]:
        for run in experiment_runs(config, experiment):
            if run not in seen:
                seen.add(run)
                yield run


def model_spec(config: dict, dataset: str, arch: str) -> dict[str, Any]:
    """Keyword arguments of ``infoopt.models.build_model`` for ``arch`` on ``dataset``."""
    from infoopt.data import DATASETS

    data = DATASETS[dataset]
    return {
        "name": config["archs"][arch]["model"],
        "num_classes": data.num_classes,
        "in_channels": data.in_channels,
        "image_size": data.image_size,
        "options": copy.deepcopy(config["archs"][arch]["options"]),
    }


def init_spec(config: dict, dataset: str, arch: str, seed: int) -> dict[str, Any]:
    """What ``infoopt init`` needs: the model to build and the seed of its initial weights."""
    return {
        "dataset": dataset,
        "arch": arch,
        "seed": seed,
        "model": model_spec(config, dataset, arch),
    }


def run_spec(config: dict, run: Run) -> dict[str, Any]:
    """Everything ``infoopt train`` needs to know about one run, as plain JSON values."""
    arch = config["archs"][run.arch]
    opt = config["optimizers"][run.optimizer]
    hparams = {**opt["hparams"], **opt["arch_hparams"].get(run.arch, {})}
    training = {
        key: arch[key] for key in ("epochs", "batch_size", "warmup_epochs", "augment")
    } | copy.deepcopy(config["training"])
    return init_spec(config, run.dataset, run.arch, run.seed) | {
        "optimizer": run.optimizer,
        "algorithm": opt["algorithm"],
        "hparams": hparams,
        "training": training,
    }


def parse_spec(text: str) -> dict[str, Any]:
    """A run spec given on the command line: JSON text, or the path of a JSON or YAML file."""
    if text.lstrip().startswith("{"):
        return json.loads(text)
    path = Path(text)
    if not path.is_file():
        raise ConfigError(f"spec {text!r} is neither JSON text nor an existing file")
    return yaml.safe_load(path.read_text())
