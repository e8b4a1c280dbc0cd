"""Batched random crop (zero padding) and horizontal flip of uint8 images on their device.

The crop reads from images zero-padded once (:func:`pad_images`); one ``gather`` with
per-sample row/column offsets does crop and flip together, with no per-sample Python.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pad_images(x: torch.Tensor, padding: int) -> torch.Tensor:
    """Zero-pad (N, C, H, W) images by ``padding`` on each side of H and W."""
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    return F.pad(x, (padding, padding, padding, padding)) if padding else x


class RandomCropFlip:
    """Crop ``height``×``width`` at a uniform offset in 0..2·padding, flip with p = 0.5.

    Same as torchvision's ``RandomCrop(size, padding)`` followed by
    ``RandomHorizontalFlip()`` on the raw image, drawn for a whole batch at once.
    """

    def __init__(
        self, height: int, width: int, padding: int, flip: bool, device: torch.device | str
    ) -> None:
        if padding < 0:
            raise ValueError(f"crop padding must be >= 0, got {padding}")
        self.height, self.width, self.padding, self.flip = height, width, padding, flip
        self.device = torch.device(device)
        padded_width = width + 2 * padding
        columns = torch.arange(width, device=self.device)
        self._row_offsets = torch.arange(height, device=self.device) * padded_width
        self._columns = columns
        # Adding this to the columns mirrors them: j -> width - 1 - j.
        self._mirror = width - 1 - 2 * columns

    def sample(
        self, batch: int, rng: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-sample row offset, column offset (0..2·padding) and flip flag (0/1)."""
        shifts = torch.randint(
            0, 2 * self.padding + 1, (2, batch), generator=rng, device=self.device
        )
        if self.flip:
            flips = torch.randint(0, 2, (batch,), generator=rng, device=self.device)
        else:
            flips = torch.zeros(batch, dtype=torch.int64, device=self.device)
        return shifts[0], shifts[1], flips

    def apply(
        self, padded: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flips: torch.Tensor
    ) -> torch.Tensor:
        """Crop each padded image (B, C, H+2p, W+2p) at (dy, dx), mirrored where flips."""
        batch, channels, padded_height, padded_width = padded.shape
        rows = (dy * padded_width).unsqueeze(1) + self._row_offsets
        cols = dx.unsqueeze(1) + self._columns + flips.unsqueeze(1) * self._mirror
        index = (rows.unsqueeze(2) + cols.unsqueeze(1)).view(batch, 1, -1)
        out = padded.reshape(batch, channels, padded_height * padded_width).gather(
            2, index.expand(batch, channels, -1)
        )
        return out.view(batch, channels, self.height, self.width)

    def __call__(self, padded: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
        return self.apply(padded, *self.sample(len(padded), rng))
