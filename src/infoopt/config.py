"""The experiment configuration: validation against the schema, and the runs it defines.

:func:`resolve_config` checks a configuration against the schema and the registries, so a
wrong key or value stops the workflow before any job starts, with a one-line message that names
the key and what it allows. It also fills every default, the schema's and the registries' (each
optimizer's hyper-parameters, each model's options), so that two configurations meaning the same
run give the same spec. The hyper-parameter grids (:mod:`infoopt.grid`) and the learning-rate
sweeps (:mod:`infoopt.sweep`) build on the runs defined here and are checked there; Snakemake
(``workflow/rules/common.smk``) and the tests go through
:func:`infoopt.validate.validate_config`, which does all of it.
"""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
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


def resolve_config(config: dict, schema_path: str | Path, *, checks: bool = True) -> dict:
    """A validated copy of ``config`` with defaults filled in, its sweeps not yet checked; a
    ConfigError names a bad key.

    ``checks`` False gives the same configuration without the checks that build something
    (each model at each data set's shape, a library model's options, each optimizer on a dummy
    parameter and on each model's parameter groups), which cost seconds of imports (timm,
    torch._dynamo): for a configuration already checked, as a cluster job's own parse of the
    workflow sees it."""
    config = copy.deepcopy(config)
    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = _with_defaults(jsonschema.Draft202012Validator)(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is not None:
        raise ConfigError(f"config key {_key_path(error)}: {error.message}")
    _check_references(config)
    _check_datasets(config)
    _check_checkpoints(config["training"]["checkpoints"])
    _resolve_model_options(config, checks)
    _resolve_hparams(config, checks)
    return config


def _check_references(config: dict) -> None:
    # Imported here: the registries pull in torch, which the schema check itself does not need.
    from infoopt.data import DATASETS
    from infoopt.data.registry import register_image_folders
    from infoopt.models import MODELS
    from infoopt.models.library import is_library_model

    def require(name: str, known, where: str) -> None:
        if name not in known:
            raise ConfigError(
                f"config key {where}: unknown {name!r}; known: {', '.join(sorted(known))}"
            )

    _check_image_folders(config["datasets"])
    try:
        register_image_folders(config["datasets"])
    except ValueError as error:
        raise ConfigError(f"config key datasets: {error}") from None
    for exp_name, exp in config["experiments"].items():
        require(exp["dataset"], DATASETS, f"experiments.{exp_name}.dataset")
        for arch in exp["archs"]:
            require(arch, config["archs"], f"experiments.{exp_name}.archs")
        for optimizer in exp["optimizers"]:
            require(optimizer, config["optimizers"], f"experiments.{exp_name}.optimizers")
    for name in config["datasets"]:
        require(name, DATASETS, f"datasets.{name}")
    for name, arch in config["archs"].items():
        if not is_library_model(arch["model"]):
            require(arch["model"], MODELS, f"archs.{name}.model")
    for name, opt in config["optimizers"].items():
        for where, entry in _algorithm_entries(name, opt):
            _optimizer_factory(entry["algorithm"], f"{where}.algorithm")
            for arch in entry["arch_hparams"]:
                require(arch, config["archs"], f"{where}.arch_hparams")


def _check_image_folders(datasets: dict) -> None:
    """An image folder (a dataset with ``classes``) has a local path or a url and md5."""
    for name, settings in datasets.items():
        if "classes" not in settings:
            continue
        where = f"config key datasets.{name}"
        if ("path" in settings) == ("url" in settings):
            raise ConfigError(f"{where}: an image folder needs either a path or a url (and md5)")
        if "url" in settings and "md5" not in settings:
            raise ConfigError(f"{where}.md5: an image folder's archive at a url needs its md5")
        if "path" in settings and not Path(settings["path"]).exists():
            raise ConfigError(f"{where}.path: {settings['path']} does not exist")


def _check_datasets(config: dict) -> None:
    """A known dataset's download settings: an md5 that is not the registry's needs the URL of
    the other archive it is the md5 of; a dataset of several files takes a base URL only."""
    from infoopt.data import DATASETS

    for name, settings in config["datasets"].items():
        spec, where = DATASETS[name], f"config key datasets.{name}"
        if "classes" in settings:
            continue
        if spec.bundled and settings:
            raise ConfigError(f"{where}: {name} is bundled; it takes no url or md5")
        md5 = settings.get("md5")
        if md5 is None:
            continue
        if spec.files:
            raise ConfigError(
                f"{where}.md5: {name} is {len(spec.files)} files, each checked against its "
                "known md5; give only url, the base URL of a mirror holding them"
            )
        if md5 != spec.md5 and "url" not in settings:
            raise ConfigError(
                f"{where}.md5: {md5} is not the md5 of {name}'s archive at {spec.url} "
                f"({spec.md5}); to use another archive give its url too"
            )


def _check_checkpoints(checkpoints: list[float]) -> None:
    from infoopt.labels import clashing_labels, progress_label

    where = "config key training.checkpoints"
    if checkpoints != sorted(checkpoints):
        raise ConfigError(f"{where}: must be in increasing order, got {checkpoints}")
    if 1.0 not in checkpoints:
        raise ConfigError(f"{where}: must contain 1.0, the end of training, got {checkpoints}")
    if clashing_labels(checkpoints, progress_label):
        labels = [progress_label(p) for p in checkpoints]
        raise ConfigError(
            f"{where}: {checkpoints} name the same file at two decimals ({labels}); "
            "checkpoints must differ by at least 0.01"
        )


def _resolve_model_options(config: dict, checks: bool) -> None:
    """Check each architecture's options on every dataset it is run on; fill their defaults."""
    from infoopt.data import DATASETS
    from infoopt.models import ModelOptionError, resolve_model_options

    datasets: dict[str, set[str]] = {name: set() for name in config["archs"]}
    for exp in config["experiments"].values():
        for arch in exp["archs"]:
            datasets[arch].add(exp["dataset"])
    for name, arch in config["archs"].items():
        shapes = [None] + [DATASETS[dataset].model_shape for dataset in sorted(datasets[name])]
        for shape in shapes if checks else [None]:
            try:
                resolved = resolve_model_options(
                    arch["model"], arch["options"], shape, check=checks
                )
            except ModelOptionError as error:
                key = f"archs.{name}.options" + (f".{error.name}" if error.name else "")
                if error.name == "model":  # an import path that names no factory
                    key = f"archs.{name}.model"
                raise ConfigError(f"config key {key}: {error}") from None
        arch["options"] = resolved


def _algorithm_entries(name: str, opt: dict) -> list[tuple[str, dict]]:
    """(config key, entry) of each algorithm of optimizer ``name``: the entry itself, or each of
    its parameter groups (infoopt.optim.groups)."""
    where = f"optimizers.{name}"
    if "groups" not in opt:
        if "algorithm" not in opt:
            raise ConfigError(f"config key {where}: needs an algorithm, or groups")
        return [(where, opt)]
    mixed = [key for key in ("algorithm", "hparams", "arch_hparams") if opt.get(key)]
    if mixed:
        raise ConfigError(
            f"config key {where}.{mixed[0]}: an optimizer with groups gives each group its "
            "algorithm and hyper-parameters"
        )
    return [(f"{where}.groups.{group}", rule) for group, rule in opt["groups"].items()]


def _optimizer_factory(algorithm: str, where: str):
    """The factory of ``algorithm``; a ConfigError naming ``where`` if there is none."""
    from infoopt.optim import optimizer_factory

    try:
        return optimizer_factory(algorithm)
    except ValueError as error:  # an ImportPathError too
        raise ConfigError(f"config key {where}: {error}") from None


def _resolve_hparams(config: dict, checks: bool) -> None:
    """Check each optimizer's hyper-parameters on every architecture; fill their defaults;
    check that its parameter groups cover each model it trains."""
    from infoopt.optim import HyperParameterError

    for name, opt in config["optimizers"].items():
        for where, entry in _algorithm_entries(name, opt):
            factory = _optimizer_factory(entry["algorithm"], f"{where}.algorithm")
            for arch in config["archs"]:
                override = entry["arch_hparams"].get(arch, {})
                hparams = {**entry["hparams"], **override}
                try:
                    factory.resolve(hparams, construct=checks)
                except HyperParameterError as error:
                    section = f"arch_hparams.{arch}" if error.name in override else "hparams"
                    key = f"{where}.{section}"
                    if error.name in hparams:
                        key += f".{error.name}"
                    on = f" (with arch_hparams.{arch})" if override and section == "hparams" else ""
                    raise ConfigError(f"config key {key}: {error}{on}") from None
            entry["hparams"] = {**factory.defaults, **entry["hparams"]}
        if "groups" in opt and checks:
            _check_groups(config, name)


def _check_groups(config: dict, name: str) -> None:
    """Every parameter of each model that optimizer ``name`` trains is in exactly one of its
    groups, and each group's algorithm takes its parameters; the models are built on the meta
    device (no memory, no time)."""
    import torch

    from infoopt.models import build_model
    from infoopt.optim import GroupError, assign_groups, optimizer_factory

    groups = config["optimizers"][name]["groups"]
    where = f"optimizers.{name}.groups"
    models = sorted(
        {
            (exp["dataset"], arch)
            for exp in config["experiments"].values()
            if name in exp["optimizers"]
            for arch in exp["archs"]
        }
    )
    for dataset, arch in models:
        with torch.device("meta"):
            model = build_model(**model_spec(config, dataset, arch))
        named = list(model.named_parameters())
        try:
            group_of = assign_groups(groups, named)
        except GroupError as error:
            key = f"{where}.{error.group}" if error.group else where
            raise ConfigError(f"config key {key}: {error} (in {arch} on {dataset})") from None
        for group, rule in groups.items():
            params = [p for n, p in named if group_of[n] == group]
            factory = optimizer_factory(rule["algorithm"])
            hparams = factory.resolve({**rule["hparams"], **rule["arch_hparams"].get(arch, {})})
            try:
                if params:
                    factory.cls(params, **hparams)
            except (ValueError, TypeError) as error:
                raise ConfigError(
                    f"config key {where}.{group}: {rule['algorithm']} cannot train its "
                    f"parameters in {arch}: {' '.join(str(error).split())}"
                ) from None


def optimizer_spec(config: dict, optimizer: str, arch: str) -> dict[str, Any]:
    """The part of a run's spec that says how it is optimized: the algorithm (for an entry with
    groups, a label joining theirs) and its resolved hyper-parameters, each group's rule, and
    the package (and version) of each algorithm named by import path, so that upgrading that
    package retrains the run."""
    from infoopt.imports import distribution_of, is_import_path

    def algorithm(entry: dict) -> dict[str, Any]:
        name = entry["algorithm"]
        fields = {
            "algorithm": name,
            "hparams": {**entry["hparams"], **entry["arch_hparams"].get(arch, {})},
        }
        if is_import_path(name):
            fields["package"] = distribution_of(name)
        return fields

    opt = config["optimizers"][optimizer]
    if "groups" not in opt:
        return algorithm(opt)
    groups = {
        group: {key: rule[key] for key in ("names", "exclude", "ndim") if key in rule}
        | algorithm(rule)
        for group, rule in opt["groups"].items()
    }
    label = "+".join(dict.fromkeys(rule["algorithm"] for rule in groups.values()))
    return {"algorithm": label, "hparams": {}, "groups": groups}


# A training run's directory, as a pattern of its wildcards: the rules' outputs, and, filled in
# with a Run's fields, Run.directory.
RUN_DIR = "results/runs/{dataset}/{arch}/{optimizer}/seed{seed}"


@dataclass(frozen=True)
class Run:
    """One training run: the wildcards of its output paths."""

    dataset: str
    arch: str
    optimizer: str
    seed: int

    @property
    def directory(self) -> str:
        return RUN_DIR.format(**asdict(self))


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

    return {
        "name": config["archs"][arch]["model"],
        **DATASETS[dataset].model_shape,
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
    """Everything ``infoopt train`` needs to know about one run: the dict form of its
    :class:`~infoopt.records.RunSpec`."""
    arch = config["archs"][run.arch]
    opt = config["optimizers"][run.optimizer]
    training = (
        {key: arch[key] for key in ("epochs", "batch_size", "warmup_epochs", "augment")}
        # A grid point's training settings (infoopt.grid) replace the architecture's.
        | opt.get("training", {})
        | copy.deepcopy(config["training"])
    )
    return init_spec(config, run.dataset, run.arch, run.seed) | {
        "optimizer": run.optimizer,
        **optimizer_spec(config, run.optimizer, run.arch),
        "training": training,
    }


def parse_spec(text: str) -> dict[str, Any]:
    """The value of a command's ``--spec`` (a run's spec, an initial state's, the Hessian's
    options): JSON text, or the path of a JSON or YAML file."""
    if text.lstrip().startswith("{"):
        return json.loads(text)
    path = Path(text)
    if not path.is_file():
        raise ConfigError(f"spec {text!r} is neither JSON text nor an existing file")
    return yaml.safe_load(path.read_text())
