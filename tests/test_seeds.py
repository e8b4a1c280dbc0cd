"""Another seed draws every random choice anew, not only the initial weights: the data order,
the augmentation, dropout, and the Hessian's coordinates and probes."""

from __future__ import annotations

import dataclasses
import json

import torch

from conftest import SCHEMA
from infoopt.cli import main
from infoopt.config import Run, init_spec, run_spec
from infoopt.data import load_prepared
from infoopt.data.loader import TrainLoader
from infoopt.hessian.blocks import block_coordinates
from infoopt.hessian.space import ParameterSpace
from infoopt.hessian.trace import rademacher
from infoopt.models import build_model
from infoopt.records import RunSpec
from infoopt.train import Trainer
from infoopt.validate import validate_config

SEEDS = (0, 1)


def first_batch(prepared, seed: int, **augment):
    return next(TrainLoader(prepared, 64, seed, **augment).epoch(0))


def test_the_data_order_depends_on_the_seed(digits_npz):
    # Labels that name each sample: the batch's labels are the order.
    prepared = load_prepared(digits_npz, torch.device("cpu"))
    numbered = dataclasses.replace(prepared, y_train=torch.arange(len(prepared.y_train)))
    orders = [first_batch(numbered, seed, crop_padding=0, flip=False)[1] for seed in SEEDS]
    assert not torch.equal(*orders)
    assert torch.equal(orders[0], first_batch(numbered, 0, crop_padding=0, flip=False)[1])


def test_the_augmentation_depends_on_the_seed(digits_npz):
    # Every image the same: what differs between seeds is the augmentation alone.
    prepared = load_prepared(digits_npz, torch.device("cpu"))
    same = dataclasses.replace(
        prepared, x_train=prepared.x_train[:1].repeat(64, 1, 1, 1), y_train=prepared.y_train[:64]
    )
    images = [first_batch(same, seed, crop_padding=2, flip=True)[0] for seed in SEEDS]
    assert not torch.equal(*images)
    assert torch.equal(images[0], first_batch(same, 0, crop_padding=2, flip=True)[0])


def test_dropout_depends_on_the_seed(smoke_config, digits_npz, tmp_path):
    """Two runs of one initial state and the same batch: their steps differ by dropout."""
    config = validate_config(smoke_config, SCHEMA)
    init = tmp_path / "init.pt"
    spec = json.dumps(init_spec(config, "digits", "vit", 0))
    assert main(["init", "--spec", spec, "--out", str(init)]) == 0
    prepared = load_prepared(digits_npz, torch.device("cpu"))
    x, y = first_batch(prepared, 0, crop_padding=0, flip=False)
    losses = []
    for seed in (0, 1, 0):
        trainer = Trainer(
            RunSpec.from_dict(run_spec(config, Run("digits", "vit", "sgd", seed))),
            init,
            digits_npz,
            tmp_path / f"run{seed}",
            torch.device("cpu"),
        )
        trainer.step(x, y)
        losses.append(trainer.state.loss_sum.item())
    assert losses[0] != losses[1] and losses[0] == losses[2]


def test_the_hessians_coordinates_and_probes_depend_on_the_seed():
    model = build_model(
        "resnet18", num_classes=10, in_channels=1, image_size=8, options={"width": 4}
    )
    space = ParameterSpace.of(model)
    coords = [block_coordinates(space, 8, seed) for seed in SEEDS]
    large = [b for b, numel in enumerate(space.numels) if numel > 8]
    assert all(not torch.equal(coords[0][b], coords[1][b]) for b in large)
    assert not torch.equal(rademacher(1000, 0, 0), rademacher(1000, 1, 0))
