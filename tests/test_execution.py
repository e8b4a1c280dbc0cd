"""bf16 autocast and channels-last, checked on what the model computes, and when they apply."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import SCHEMA
from infoopt.cli import main
from infoopt.config import Run, init_spec, run_spec
from infoopt.data.arrays import ImageArrays, write_arrays
from infoopt.records import RunSpec
from infoopt.train import Trainer, resolve_execution
from infoopt.validate import validate_config

CPU = torch.device("cpu")
# Parameters of the paper's models (tests/test_models.py counts them).
FULL_SIZE = {"resnet18": 11_173_962, "vit": 9_523_722}


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


def trainer(config, data, tmp_path, dataset="digits", arch="resnet18", **training) -> Trainer:
    config = validate_config(config, SCHEMA)
    spec = run_spec(config, Run(dataset, arch, "sgd", 0))
    spec["training"].update(training)
    init = tmp_path / "init.pt"
    arguments = ["--spec", json.dumps(init_spec(config, dataset, arch, 0)), "--out", str(init)]
    assert main(["init", *arguments]) == 0
    return Trainer(RunSpec.from_dict(spec), init, data, tmp_path / "run", CPU)


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


@pytest.fixture(scope="module")
def cifar_shaped_npz(tmp_path_factory):
    """Eight CIFAR-10-shaped images per split: what the paper's full-size models take."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(2, 8, 3, 32, 32), dtype=np.uint8)
    labels = np.arange(8, dtype=np.int64)
    path = tmp_path_factory.mktemp("cifar") / "cifar10.npz"
    write_arrays(path, ImageArrays(images[0], labels, images[1], labels), num_classes=10)
    return path


@pytest.mark.parametrize("arch", ["resnet18", "vit"])
def test_full_size_models_compute_in_bf16_channels_last(
    paper_config, cifar_shaped_npz, tmp_path, arch
):
    """The paper's full-size models, as the dress rehearsal trains them where the CPU computes
    bf16 natively (elsewhere it trains them in float32: emulated bf16 is ten times slower)."""
    paper_config["archs"][arch]["batch_size"] = 2
    paper_config["training"]["eval_batch_size"] = 8
    chosen = trainer(
        paper_config, cifar_shaped_npz, tmp_path, "cifar10", arch, precision="bf16",
        channels_last=True,
    )  # fmt: skip
    assert sum(p.numel() for p in chosen.model.parameters()) == FULL_SIZE[arch]
    for split in (None, "test"):
        seen = computed(chosen, split)
        assert len(seen) > 10 and {dtype for _, dtype, _, _ in seen} == {torch.bfloat16}, seen
        # The ViT has no convolution (its patch embedding is linear): no 4-D tensor to lay out.
        assert formats(seen) == ({"channels_last"} if arch == "resnet18" else set()), seen


@pytest.mark.parametrize(
    ("avx512_bf16", "amx", "expected"),
    [(False, False, "fp32"), (True, False, "bf16"), (False, True, "bf16")],
)
def test_the_rehearsal_trains_in_bf16_where_the_cpu_computes_it(
    monkeypatch, avx512_bf16, amx, expected
):
    from infoopt import rehearsal

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    assert rehearsal.precision() == expected
