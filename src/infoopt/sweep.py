"""Learning-rate sweeps: the candidate runs, what each trains, and the lr they select.

An experiment's ``lr_sweep`` (config.yaml) gives each of its optimizers, per architecture,
candidate learning rates: the optimizer's configured lr times each of ``multipliers``. Every
candidate is trained once, at the sweep's seed, on the training set minus a seeded, stratified
``holdout`` fraction (:func:`infoopt.data.holdout_split`); the held-out images take the test
set's place wherever a run evaluates, so the test set never chooses a hyper-parameter.
:func:`select_lr` keeps the candidate with the highest final validation accuracy (ties: the
lower validation loss, then the smaller lr) and the experiment's runs of that (dataset, arch,
optimizer) take their lr from the selection file (``infoopt train --hparams-from``).

Paths are deterministic, so Snakemake's DAG is static and a changed sweep reruns exactly what
depends on it: :data:`SWEEP_RUN` and :data:`SELECTION`, patterns of their wildcards that the
rules use as they are and :class:`SweepRun` and :func:`selection_path` fill in.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from infoopt.collect import read_run_record
from infoopt.config import ConfigError, Run, run_spec
from infoopt.labels import clashing_labels, number_label
from infoopt.records import RunRecord

# The sweep of one (dataset, arch, optimizer).
SWEEP_DIR = "results/sweep/{dataset}/{arch}/{optimizer}"
# A candidate's run directory (ckpt/1.00.pt, history.csv, run.json), {lr} as number_label
# writes it.
SWEEP_RUN = f"{SWEEP_DIR}/lr{{lr}}/seed{{seed}}"
# The selected hyper-parameters of (dataset, arch, optimizer).
SELECTION = f"{SWEEP_DIR}/selected.json"
CRITERION = "highest final validation accuracy; ties: lower validation loss, then smaller lr"


@dataclass(frozen=True)
class SweepRun:
    """One candidate of a sweep: the wildcards of its run directory."""

    dataset: str
    arch: str
    optimizer: str
    lr: str
    seed: int

    @property
    def directory(self) -> str:
        return SWEEP_RUN.format(**asdict(self))


def selection_path(dataset: str, arch: str, optimizer: str) -> str:
    """Where the selected hyper-parameters of (dataset, arch, optimizer) are written."""
    return SELECTION.format(dataset=dataset, arch=arch, optimizer=optimizer)


def configured_lr(config: dict, dataset: str, arch: str, optimizer: str) -> float:
    """The lr the config gives ``optimizer`` on ``arch`` (its registry default if none)."""
    lr = run_spec(config, Run(dataset, arch, optimizer, 0))["hparams"].get("lr")
    if lr is None:
        raise ConfigError(
            f"config key optimizers.{optimizer}.hparams: a swept optimizer needs an lr to scale"
        )
    return float(lr)


def candidate_lrs(config: dict, dataset: str, arch: str, optimizer: str) -> list[float]:
    """The swept lrs of (dataset, arch, optimizer), rounded to their labels; [] if not swept."""
    sweep = sweep_of(config, dataset, arch, optimizer)
    if sweep is None:
        return []
    center = configured_lr(config, dataset, arch, optimizer)
    return [float(number_label(center * multiplier)) for multiplier in sweep["multipliers"]]


def _swept(config: dict) -> dict[tuple[str, str, str], tuple[str, dict | None]]:
    """(dataset, arch, optimizer) -> (an experiment that runs it, that experiment's lr_sweep)."""
    owners: dict[tuple[str, str, str], tuple[str, dict | None]] = {}
    for name, exp in config["experiments"].items():
        sweep = exp.get("lr_sweep")
        for arch in exp["archs"]:
            for optimizer in exp["optimizers"]:
                key = (exp["dataset"], arch, optimizer)
                if key in owners and owners[key][1] != sweep:
                    other = owners[key][0]
                    how = "a different lr_sweep" if owners[key][1] and sweep else "no lr_sweep"
                    raise ConfigError(
                        f"config key experiments.{name}.lr_sweep: {optimizer} on "
                        f"{exp['dataset']}/{arch} is also run by experiment {other!r}, one of "
                        f"them with {how}; their runs share one directory, so they need the "
                        "same lr: give one of them its own optimizer key"
                    )
                owners.setdefault(key, (name, sweep))
    return owners


def check_sweeps(config: dict) -> None:
    """ConfigError unless every swept (dataset, arch, optimizer) is swept alike by every
    experiment that runs it, has an lr to scale, and has distinct candidate lrs."""
    for (dataset, arch, optimizer), (name, sweep) in _swept(config).items():
        if sweep is None:
            continue
        lrs = candidate_lrs(config, dataset, arch, optimizer)
        if clashing_labels(lrs, number_label):
            raise ConfigError(
                f"config key experiments.{name}.lr_sweep.multipliers: candidate lrs of "
                f"{optimizer} on {arch} coincide at 6 significant digits: {lrs}"
            )


def sweep_of(config: dict, dataset: str, arch: str, optimizer: str) -> dict | None:
    """The lr_sweep that chooses the lr of (dataset, arch, optimizer), or None."""
    owner = _swept(config).get((dataset, arch, optimizer))
    return None if owner is None else owner[1]


def sweep_runs(config: dict, experiment: str) -> list[SweepRun]:
    """The candidate runs of ``experiment``'s sweep ([] if it has none)."""
    exp = config["experiments"][experiment]
    sweep = exp.get("lr_sweep")
    if sweep is None:
        return []
    return [
        SweepRun(exp["dataset"], arch, optimizer, number_label(lr), sweep["seed"])
        for arch in exp["archs"]
        for optimizer in exp["optimizers"]
        for lr in candidate_lrs(config, exp["dataset"], arch, optimizer)
    ]


def candidate_runs(config: dict, dataset: str, arch: str, optimizer: str) -> list[SweepRun]:
    """The candidate runs whose results choose the lr of (dataset, arch, optimizer)."""
    sweep = sweep_of(config, dataset, arch, optimizer)
    if sweep is None:
        raise ConfigError(f"no experiment sweeps the lr of {optimizer} on {dataset}/{arch}")
    return [
        SweepRun(dataset, arch, optimizer, number_label(lr), sweep["seed"])
        for lr in candidate_lrs(config, dataset, arch, optimizer)
    ]


def sweep_spec(config: dict, run: SweepRun) -> dict[str, Any]:
    """What ``infoopt train`` needs for one candidate: the run's spec with the candidate lr,
    the held-out split, the sweep's epochs, and only the final checkpoint."""
    if run not in candidate_runs(config, run.dataset, run.arch, run.optimizer):
        valid = ", ".join(
            r.lr for r in candidate_runs(config, run.dataset, run.arch, run.optimizer)
        )
        raise ConfigError(
            f"lr {run.lr} at seed {run.seed} is not a candidate of {run.optimizer} on "
            f"{run.dataset}/{run.arch} (candidates: {valid})"
        )
    sweep = sweep_of(config, run.dataset, run.arch, run.optimizer)
    spec = run_spec(config, Run(run.dataset, run.arch, run.optimizer, run.seed))
    spec["hparams"]["lr"] = float(run.lr)
    training = spec["training"]
    training["checkpoints"] = [1.0]
    if sweep["epochs"] is not None:
        training["epochs"] = sweep["epochs"]
    training["holdout"] = {"fraction": sweep["holdout"], "seed": sweep["seed"]}
    return spec


def selection_file(config: dict, run: Run) -> str | None:
    """The selection file ``run`` takes its lr from, or None if its lr is the configured one."""
    if sweep_of(config, run.dataset, run.arch, run.optimizer) is None:
        return None
    return selection_path(run.dataset, run.arch, run.optimizer)


def _candidate(run_dir: Path, record: RunRecord) -> dict[str, Any]:
    final = [c for c in record.checkpoints if c["progress"] == 1.0]
    ok = record.status == "ok" and final and final[0]["status"] == "ok"
    return {
        "lr": record.spec.hparams["lr"],
        "status": record.status,
        "val_accuracy": final[0]["test_accuracy"] if ok else math.nan,
        "val_loss": final[0]["test_loss"] if ok else math.nan,
        "run": str(run_dir),
    }


def select_lr(run_dirs: Iterable[str | Path]) -> dict[str, Any]:
    """The selection among the candidate runs in ``run_dirs`` (one sweep's, all of them)."""
    records = {Path(d): read_run_record(d) for d in run_dirs}
    if not records:
        raise ValueError("no sweep runs to select from")
    keys = {(r.spec.dataset, r.spec.arch, r.spec.optimizer, r.spec.seed) for r in records.values()}
    if len(keys) != 1:
        raise ValueError(
            f"sweep runs of different (dataset, arch, optimizer, seed): {sorted(keys)}"
        )
    for run_dir, record in records.items():
        if "holdout" not in record.spec.training:
            raise ValueError(f"{run_dir} is not a sweep run: it has no held-out split")
    dataset, arch, optimizer, seed = keys.pop()
    candidates = sorted((_candidate(d, r) for d, r in records.items()), key=lambda c: c["lr"])
    finished = [c for c in candidates if math.isfinite(c["val_accuracy"])]
    if not finished:
        lrs = ", ".join(number_label(c["lr"]) for c in candidates)
        raise ValueError(
            f"every candidate lr of {optimizer} on {dataset}/{arch} diverged ({lrs}); "
            "lower the sweep's multipliers"
        )
    best = max(finished, key=lambda c: (c["val_accuracy"], -c["val_loss"], -c["lr"]))
    lrs = [c["lr"] for c in candidates]
    return {
        "dataset": dataset,
        "arch": arch,
        "optimizer": optimizer,
        "seed": seed,
        "hparams": {"lr": best["lr"]},
        "criterion": CRITERION,
        # The best lr at the end of the grid: the optimum may lie outside it.
        "at_edge": len(lrs) > 1 and best["lr"] in (lrs[0], lrs[-1]),
        "candidates": candidates,
    }


def apply_selection(spec: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """``spec`` with the hyper-parameters selected in ``path``, which it records."""
    try:
        selection = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: cannot read the selection: {error}") from error
    for key in ("dataset", "arch", "optimizer"):
        if selection.get(key) != spec[key]:
            raise ValueError(
                f"{path} selects hyper-parameters for {key} {selection.get(key)!r}, "
                f"but the run's {key} is {spec[key]!r}"
            )
    return spec | {
        "hparams": spec["hparams"] | selection["hparams"],
        "hparams_from": {"path": str(path), "hparams": selection["hparams"]},
    }
