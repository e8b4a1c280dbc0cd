"""ResNet18, CIFAR variant: 3x3 stride-1 stem, no max-pool, four stages of BasicBlocks.

At the defaults (width 64, blocks [2, 2, 2, 2]) with 10 classes it has 62 parameter tensors and
11,173,962 parameters, the counts of the paper's ResNet18.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def _conv3x3(in_channels: int, out_channels: int, stride: int) -> nn.Conv2d:
    # No bias: every convolution is followed by a BatchNorm, whose shift makes a bias redundant.
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 conv+BN layers plus a residual (a 1x1 conv+BN projection when the shape changes)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_channels, out_channels, stride)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = _conv3x3(out_channels, out_channels, 1)
        self.bn2 = nn.BatchNorm2d(out_channels)
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """Stem, four stages (strides 1, 2, 2, 2; widths w, 2w, 4w, 8w), global average pool, Linear."""

    def __init__(
        self, *, num_classes: int, in_channels: int, width: int, blocks: Sequence[int]
    ) -> None:
        super().__init__()
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ValueError(f"width must be a positive integer, got {width!r}")
        if (
            isinstance(blocks, str | bytes)
            or not isinstance(blocks, Sequence)
            or len(blocks) != 4
            or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in blocks)
        ):
            raise ValueError(
                f"blocks must be a list of 4 positive integers (blocks per stage), got {blocks!r}"
            )
        self.stem = nn.Sequential(_conv3x3(in_channels, width, 1), nn.BatchNorm2d(width), nn.ReLU())
        stages = []
        channels = width
        for i, (n, stride) in enumerate(zip(blocks, (1, 2, 2, 2), strict=True)):
            out_channels = width * 2**i
            stage = [BasicBlock(channels, out_channels, stride)]
            stage += [BasicBlock(out_channels, out_channels, 1) for _ in range(n - 1)]
            stages.append(nn.Sequential(*stage))
            channels = out_channels
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        # flatten, not view: the pooled tensor is not contiguous under channels_last.
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def resnet18(
    *,
    num_classes: int,
    in_channels: int,
    image_size: int,
    width: int = 64,
    blocks: Sequence[int] = (2, 2, 2, 2),
) -> ResNet:
    """CIFAR ResNet18. ``image_size`` is accepted for a uniform factory signature; global average
    pooling makes the network independent of it (8x8 inputs reach the last stage as 1x1)."""
    return ResNet(num_classes=num_classes, in_channels=in_channels, width=width, blocks=blocks)
