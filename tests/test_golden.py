"""Golden values: the seeds, the Hessian's coordinates and a tiny run's first steps, pinned per
``NUMERICS`` version (infoopt.store) and torch version. A change that alters them alters every
stored result of that kind, so it must bump ``NUMERICS`` (the store then recomputes instead of
serving the old numbers as current) and add the new values here under the new version."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import SCHEMA
from infoopt.cli import main
from infoopt.config import Run, init_spec, run_spec
from infoopt.hessian.blocks import block_coordinates
from infoopt.hessian.space import ParameterSpace
from infoopt.models import build_model
from infoopt.records import RunSpec
from infoopt.seeding import derive_seed, generator
from infoopt.store import NUMERICS
from infoopt.train import Trainer
from infoopt.validate import validate_config

# (NUMERICS version, torch release) -> the values; the test prints them when an entry is missing.
TRAIN_GOLDEN: dict[tuple[int, str], dict] = {
    (1, "2.14.1"): {
        "seeding": {
            "derive_seed": [5828114455353340589, 5134589803398401830, 8781247417869548755],
            "randperm": [6, 8, 9, 4, 3, 2, 1, 0, 7, 5],
        },
        "first_steps": {
            "init_checksum": 145.00313728299443,
            "losses": [2.4478137493133545, 2.5109598636627197, 2.4473752975463867],
            "checksum": 144.4620308363228,
        },
    },
}
HESSIAN_GOLDEN: dict[tuple[int, str], dict] = {
    (1, "2.14.1"): {"coordinates": {"coords": [[15, 26, 31, 35], [0, 1, 2, 3], [0, 1, 2, 3]]}},
}


def seeding_values() -> dict:
    return {
        "derive_seed": [derive_seed(0, "step", 3), derive_seed(7, "order", 0), derive_seed("x")],
        "randperm": torch.randperm(10, generator=generator("cpu", 1, "order", 2)).tolist(),
    }


def train_values(smoke_config, digits_npz, folder) -> dict:
    """A smoke ViT's (dropout, augmentation) initial weights and its first three steps, on one
    thread in float32."""
    torch.set_num_threads(1)
    config = validate_config(smoke_config, SCHEMA)
    spec = run_spec(config, Run("digits", "vit", "adam", 0))
    init = folder / "init.pt"
    init_args = ["init", "--spec", json.dumps(init_spec(config, "digits", "vit", 0))]
    assert main([*init_args, "--out", str(init)]) == 0
    trainer = Trainer(
        RunSpec.from_dict(spec), init, digits_npz, folder / "run", torch.device("cpu")
    )
    checksum = lambda: sum(p.double().sum().item() for p in trainer.model.parameters())  # noqa: E731
    values = {"init_checksum": checksum(), "losses": []}
    batches = trainer.loader.epoch(0)
    for _ in range(3):
        before = trainer.state.loss_sum.item()
        trainer.step(*next(batches))
        values["losses"].append(trainer.state.loss_sum.item() - before)
    values["checksum"] = checksum()
    return values


def hessian_values() -> dict:
    torch.manual_seed(0)
    options = {"width": 4, "blocks": [1, 1, 1, 1]}
    model = build_model("resnet18", num_classes=10, in_channels=1, image_size=8, options=options)
    coords = block_coordinates(ParameterSpace.of(model), 4, seed=0)
    return {"coords": [c.tolist() for c in coords[:3]]}


def numbers(values) -> list[float]:
    """The numbers of nested dicts and lists, in order."""
    if isinstance(values, dict):
        values = list(values.values())
    if isinstance(values, list):
        return [x for v in values for x in numbers(v)]
    return [values]


def check(golden: dict, kind: str, part: str, values: dict, rel: float = 0.0) -> None:
    """``values`` are ``golden``'s ``part`` at this NUMERICS[kind] and torch version."""
    # The release: a CPU or CUDA build of it computes the same on the CPU.
    key = (NUMERICS[kind], torch.__version__.split("+")[0])
    assert key in golden and part in golden[key], (
        f"no golden {part} for {kind} numerics {key}; if the numbers are right, add them: "
        f"{part!r}: {values!r}"
    )
    assert numbers(values) == pytest.approx(numbers(golden[key][part]), rel=rel), (
        f"the {part} numbers changed: bump NUMERICS[{kind!r}] in infoopt/store.py"
    )


def test_seeding_is_pinned():
    check(TRAIN_GOLDEN, "train", "seeding", seeding_values())


def test_a_tiny_runs_first_steps_are_pinned(smoke_config, digits_npz, tmp_path):
    # Another CPU's vector units may round float32 differently in the last bits; a change of
    # seeding, data order or model moves these numbers in the first digits.
    values = train_values(smoke_config, digits_npz, tmp_path)
    check(TRAIN_GOLDEN, "train", "first_steps", values, rel=1e-4)


def test_hessian_coordinates_are_pinned():
    check(HESSIAN_GOLDEN, "hessian", "coordinates", hessian_values())
