"""Batches from a device-resident dataset: seeded, augmented training epochs and plain
evaluation passes.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch

from infoopt.data.augment import RandomCropFlip, pad_images
from infoopt.data.prepared import Prepared
from infoopt.seeding import generator

Batch = tuple[torch.Tensor, torch.Tensor]


class TrainLoader:
    """Shuffled, augmented, normalised training batches, all on the data's device.

    Epoch ``e`` visits the permutation drawn from ``generator(device, seed, "order", e)``;
    step ``k`` of it is augmented from ``generator(device, seed, "augment", e, k)``, so
    ``epoch(e, start_step=k)`` yields exactly the batches an uninterrupted epoch yields
    from step ``k`` on. With ``drop_last`` the last ``N % batch_size`` samples of each
    permutation are skipped.
    """

    def __init__(
        self,
        prepared: Prepared,
        batch_size: int,
        seed: int,
        crop_padding: int = 4,
        flip: bool = True,
        drop_last: bool = True,
    ) -> None:
        n = len(prepared.y_train)
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if drop_last and batch_size > n:
            raise ValueError(f"batch_size {batch_size} exceeds the {n} training samples")
        self.prepared = prepared
        self.batch_size = batch_size
        self.seed = seed
        self.steps_per_epoch = n // batch_size if drop_last else math.ceil(n / batch_size)
        self._device = prepared.device
        _, _, height, width = prepared.x_train.shape
        self._augment = (
            RandomCropFlip(height, width, crop_padding, flip, self._device)
            if crop_padding > 0 or flip
            else None
        )
        # Padded once here, so a step pads nothing.
        self._images = pad_images(prepared.x_train, crop_padding)

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[Batch]:
        """Batches (normalised float32 images, int64 labels) of ``epoch`` from ``start_step``."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        if not 0 <= start_step <= self.steps_per_epoch:
            raise ValueError(f"start_step {start_step} is outside 0..{self.steps_per_epoch}")
        return self._batches(epoch, start_step)

    def _batches(self, epoch: int, start_step: int) -> Iterator[Batch]:
        n = len(self._images)
        order_rng = generator(self._device, self.seed, "order", epoch)
        order = torch.randperm(n, generator=order_rng, device=self._device)
        for step in range(start_step, self.steps_per_epoch):
            index = order[step * self.batch_size : (step + 1) * self.batch_size]
            images = self._images.index_select(0, index)
            if self._augment is not None:
                rng = generator(self._device, self.seed, "augment", epoch, step)
                images = self._augment(images, rng)
            yield self.prepared.normalize(images), self.prepared.y_train.index_select(0, index)


def eval_batches(
    prepared: Prepared,
    split: str,
    batch_size: int,
    indices: torch.Tensor | Sequence[int] | None = None,
) -> Iterator[Batch]:
    """Normalised batches of ``split`` in order (of ``indices`` if given), no augmentation."""
    x, y = prepared.split(split)
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if indices is None:
        return (
            (prepared.normalize(x[i : i + batch_size]), y[i : i + batch_size])
            for i in range(0, len(y), batch_size)
        )
    index = torch.as_tensor(indices, dtype=torch.int64).to(prepared.device)
    if index.dim() != 1:
        raise ValueError(f"indices must be one-dimensional, got shape {tuple(index.shape)}")
    if len(index) and (int(index.min()) < 0 or int(index.max()) >= len(y)):
        raise ValueError(f"indices must lie in 0..{len(y) - 1} for the {split} split")
    return (
        (
            prepared.normalize(x.index_select(0, index[i : i + batch_size])),
            y.index_select(0, index[i : i + batch_size]),
        )
        for i in range(0, len(index), batch_size)
    )
