"""bf16 autocast and channels-last, checked on what the model computes, and when they apply."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import SCHEMA
from infoopt.cli import main
from infoopt.config import Run, init_spec, run_spec
from infoopt.records import RunSpec
from infoopt.train import Trainer, resolve_execution
from infoopt.validate import validate_config

CPU = torch.device("cpu")


@pytest.mark.parametrize(
    ("device", "training", "expected"),
    [
        ("cuda", {}, (torch.bfloat16, True)),
        ("cpu", {}, (None, False)),
        ("cuda", {"precision": "auto", "channels_last": "auto"}, (torch.bfloat16, True)),
        ("cpu", {"precision": "bf16", "channels_last": True}, (torch.bfloat16, True)),
        ("cuda", {"precision": "fp32", "channels_last": False}, (None, False)),
    ],
)
def test_resolve_execution(device, training, expected):
    assert resolve_execution(training, torch.device(device)) == expected


def trainer(smoke_config, digits_npz, tmp_path, **training) -> Trainer:
    config = validate_config(smoke_config, SCHEMA)
    spec = run_spec(config, Run("digits", "resnet18", "sgd", 0))
    spec["training"].update(training)
    init = tmp_path / "init.pt"
    assert (
        main(
            [
                "init",
                "--spec",
                json.dumps(init_spec(config, "digits", "resnet18", 0)),
                "--out",
                str(init),
            ]
        )
        == 0
    )
    return Trainer(RunSpec.from_dict(spec), init, digits_npz, tmp_path / "run", CPU)


def memory_format(tensor: torch.Tensor) -> str | None:
    """``channels_last`` or ``contiguous``; None where the shape cannot tell them apart (one
    channel, or a 1×1 map)."""
    if tensor.dim() != 4:
        return None
    formats = [
        name
        for name, fmt in (
            ("contiguous", torch.contiguous_format),
            ("channels_last", torch.channels_last),
        )
        if tensor.is_contiguous(memory_format=fmt)
    ]
    return formats[0] if len(formats) == 1 else None


def computed(trainer: Trainer, split: str | None) -> list[tuple[str, torch.dtype, str, str]]:
    """Per convolution or linear layer called: (name, output dtype, input's and weight's memory
    format), from one training step (``split`` None) or an evaluation of ``split``."""
    seen = []

    def record(name):
        def hook(module, inputs, output):
            formats = memory_format(inputs[0]), memory_format(module.weight)
            seen.append((name, output.dtype, *formats))

        return hook

    for name, module in trainer.model.named_modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            module.register_forward_hook(record(name))
    if split is None:
        trainer.step(*next(trainer.loader.epoch(0)))
    else:
        trainer.evaluate_split(split)
    return seen


def formats(seen) -> set[str]:
    return {f for _, _, *pair in seen for f in pair if f is not None}


@pytest.mark.parametrize("split", [None, "test"])
def test_bf16_and_channels_last_reach_every_layer(smoke_config, digits_npz, tmp_path, split):
    chosen = trainer(smoke_config, digits_npz, tmp_path, precision="bf16", channels_last=True)
    seen = computed(chosen, split)
    assert len(seen) > 10 and {dtype for _, dtype, _, _ in seen} == {torch.bfloat16}, seen
    assert formats(seen) == {"channels_last"}, seen


@pytest.mark.parametrize("split", [None, "test"])
def test_float32_and_contiguous_by_default_on_the_cpu(smoke_config, digits_npz, tmp_path, split):
    seen = computed(trainer(smoke_config, digits_npz, tmp_path), split)
    assert len(seen) > 10 and {dtype for _, dtype, _, _ in seen} == {torch.float32}, seen
    assert formats(seen) == {"contiguous"}, seen
