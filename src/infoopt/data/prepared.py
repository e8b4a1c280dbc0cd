"""A prepared dataset resident on a device, and its normalisation."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch

from infoopt.data.arrays import read_arrays

SPLITS = ("train", "test")


@dataclass(eq=False, repr=False)
class Prepared:
    """Train and test images (uint8, N×C×H×W) and labels (int64) on one device.

    ``mean``/``std`` (float32, per channel) are those of the training images scaled to
    [0, 1]; :meth:`normalize` applies them.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    num_classes: int
    _scale: torch.Tensor = field(init=False)
    _shift: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        device = self.x_train.device
        for name in ("x_train", "y_train", "x_test", "y_test", "mean", "std"):
            if getattr(self, name).device != device:
                raise ValueError(f"{name} is on {getattr(self, name).device}, x_train on {device}")
        for split in SPLITS:
            x, y = self.split(split)
            if x.dtype != torch.uint8 or x.dim() != 4:
                raise ValueError(f"x_{split} must be uint8 (N, C, H, W), got {x.dtype} {x.shape}")
            if y.dtype != torch.int64 or y.shape != (len(x),):
                raise ValueError(f"y_{split} must be int64 ({len(x)},), got {y.dtype} {y.shape}")
        if self.mean.shape != (self.in_channels,) or self.std.shape != (self.in_channels,):
            raise ValueError(f"mean and std must have shape ({self.in_channels},)")
        # (x/255 - mean)/std folded into one scale and shift, computed in float64.
        std = self.std.double().view(-1, 1, 1)
        self._scale = (1.0 / (255.0 * std)).float()
        self._shift = (-self.mean.double().view(-1, 1, 1) / std).float()

    @property
    def in_channels(self) -> int:
        return self.x_train.shape[1]

    @property
    def image_size(self) -> int:
        return self.x_train.shape[-1]

    @property
    def device(self) -> torch.device:
        return self.x_train.device

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The images and labels of ``name`` ('train' or 'test')."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; valid: {', '.join(SPLITS)}")
        return getattr(self, f"x_{name}"), getattr(self, f"y_{name}")

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 images (..., C, H, W) -> float32 ``(x/255 - mean)/std``, same shape."""
        if x.dtype != torch.uint8:
            raise TypeError(f"normalize expects uint8 images, got {x.dtype}")
        return x.to(torch.float32).mul_(self._scale).add_(self._shift)

    def __repr__(self) -> str:
        c, h, w = self.x_train.shape[1:]
        return (
            f"Prepared(train={len(self.x_train)}, test={len(self.x_test)}, images={c}x{h}x{w}, "
            f"num_classes={self.num_classes}, device={self.device})"
        )


def load_prepared(path: str | os.PathLike, device: torch.device | str = "cpu") -> Prepared:
    """Load an array file written by :func:`infoopt.data.prepare` onto ``device``."""
    data = read_arrays(path)
    device = torch.device(device)

    def tensor(key: str) -> torch.Tensor:
        return torch.from_numpy(data[key]).to(device)

    return Prepared(
        x_train=tensor("x_train"),
        y_train=tensor("y_train"),
        x_test=tensor("x_test"),
        y_test=tensor("y_test"),
        mean=tensor("mean"),
        std=tensor("std"),
        num_classes=int(data["num_classes"]),
    )
