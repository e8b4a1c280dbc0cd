"""The records of a run that cross files: its spec (what ``infoopt train`` is given) and its
``run.json`` (what it wrote when it ended).

Each is a frozen dataclass with one way in and out of JSON, ``from_dict``/``to_dict``; the
dict-valued fields (the model's keyword arguments, the
hyper-parameters, the training settings) stay dicts: their keys depend on the architecture, the
algorithm and the configuration schema, which check them.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def _fields_of(cls: type, values: Mapping[str, Any], what: str) -> dict[str, Any]:
    """``values`` as keyword arguments of ``cls``; a ValueError names missing or unknown keys."""
    fields = dataclasses.fields(cls)
    missing = [f.name for f in fields if f.default is dataclasses.MISSING and f.name not in values]
    unknown = sorted(set(values) - {f.name for f in fields})
    if missing or unknown:
        raise ValueError(f"{what}: missing keys {missing}, unknown keys {unknown}")
    return dict(values)


# Optional fields of a run's spec that its dict form leaves out rather than writing as null, so
# that the specs (and store keys) of runs that do not use them stay what they were.
_ABSENT_WHEN_NONE = ("hparams_from", "package", "groups")


@dataclass(frozen=True)
class RunSpec:
    """One training run as ``infoopt train`` gets it (:func:`infoopt.config.run_spec` builds
    its dict form from the configuration)."""

    dataset: str
    arch: str
    seed: int
    # Keyword arguments of infoopt.models.build_model.
    model: dict[str, Any]
    # The configuration's name of the optimizer (infoopt.checkpoint.LABEL), its algorithm (a
    # registry name or an import path) and its resolved hyper-parameters.
    optimizer: str
    algorithm: str
    hparams: dict[str, Any]
    # The configuration's training settings for this run (epochs, batch_size, checkpoints, ...).
    training: dict[str, Any]
    # The selection file of an lr sweep and the hyper-parameters it replaced in ``hparams``
    # (infoopt.sweep.apply_selection); None (absent from the dict form) for other runs.
    hparams_from: dict[str, Any] | None = None
    # An algorithm named by import path: the distribution (and version) that provides it
    # (infoopt.imports.distribution_of); None (absent) for ours.
    package: dict[str, Any] | None = None
    # Parameter groups, each with its rule, algorithm and hyper-parameters
    # (infoopt.optim.groups); None (absent) for a run of one algorithm.
    groups: dict[str, Any] | None = None

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> RunSpec:
        return cls(**_fields_of(cls, values, "run spec"))

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        return {
            key: value
            for key, value in values.items()
            if value is not None or key not in _ABSENT_WHEN_NONE
        }


@dataclass(frozen=True)
class RunRecord:
    """A run's ``run.json``: how it ended, what it was, how far it got and what made it."""

    # "ok", or "diverged" once a training loss was not finite.
    status: str
    spec: RunSpec
    total_steps: int
    steps_per_epoch: int
    steps_done: int
    wall_seconds: float
    # Per saved checkpoint: progress, step, epoch, status and the metrics at that point.
    checkpoints: list[dict[str, Any]]
    # Code version, packages and hardware (infoopt.provenance).
    provenance: dict[str, Any]
    # The model's parameter count and its tensors' names and shapes (infoopt.models.describe).
    model_parameters: dict[str, Any] | None = None
    # Parameter name -> the group that trained it (infoopt.optim.groups); None for one algorithm.
    parameter_groups: dict[str, str] | None = None

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> RunRecord:
        fields = _fields_of(cls, values, "run record")
        return cls(**fields | {"spec": RunSpec.from_dict(fields["spec"])})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"spec": self.spec.to_dict()}

    @classmethod
    def read(cls, path: str | Path) -> RunRecord:
        """The record in the file ``path``; a ValueError names an unreadable one."""
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, ValueError) as error:
            raise ValueError(f"{path}: cannot read the run's record: {error}") from error
