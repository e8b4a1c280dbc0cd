"""Seeded, stratified splits and fixed subsets of a dataset.

Index choices are drawn on the CPU, so a split is the same whichever device holds the
data.
"""

from __future__ import annotations

import dataclasses

import torch

from infoopt.data.prepared import Prepared
from infoopt.seeding import generator


def stratified_split(
    labels: torch.Tensor, n_held: int, rng: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split ``range(len(labels))`` into (kept, held) sorted index tensors (CPU, int64).

    Each class gives ``n_held * n_class / n`` samples, rounded by largest remainder so
    that exactly ``n_held`` are held out; which samples of a class are held is drawn
    from ``rng`` (a CPU generator).
    """
    labels = labels.detach().cpu()
    n = len(labels)
    if not 0 < n_held < n:
        raise ValueError(f"cannot hold out {n_held} of {n} samples")
    classes, counts = torch.unique(labels, return_counts=True)
    quota = counts.double() * n_held / n
    take = quota.floor().long()
    by_remainder = torch.argsort(quota - take, descending=True, stable=True)
    take[by_remainder[: n_held - int(take.sum())]] += 1

    # Shuffle, then group by class (stable sort keeps the shuffled order within a class).
    perm = torch.randperm(n, generator=rng)
    members = perm[torch.argsort(labels[perm], stable=True)]
    cls = torch.searchsorted(classes, labels[members])
    rank = torch.arange(n) - (torch.cumsum(counts, 0) - counts)[cls]
    held = rank < take[cls]
    return members[~held].sort().values, members[held].sort().values


def holdout_split(prepared: Prepared, fraction: float, seed: int) -> Prepared:
    """A copy whose test slot holds a seeded stratified ``fraction`` of the training set.

    The rest stays as the training set. ``mean``/``std`` are kept, so the sweep sees the
    same input scaling as the final run.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"holdout fraction must be in (0, 1), got {fraction}")
    n = len(prepared.y_train)
    n_held = round(fraction * n)
    if not 0 < n_held < n:
        raise ValueError(f"holdout fraction {fraction} of {n} training samples is {n_held}")
    kept, held = stratified_split(prepared.y_train, n_held, generator("cpu", seed, "holdout"))
    kept, held = kept.to(prepared.device), held.to(prepared.device)
    x, y = prepared.x_train, prepared.y_train
    return dataclasses.replace(
        prepared,
        x_train=x.index_select(0, kept),
        y_train=y.index_select(0, kept),
        x_test=x.index_select(0, held),
        y_test=y.index_select(0, held),
    )


def eval_subset(
    prepared: Prepared, split: str, size: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed seeded subset of ``split``: normalised float32 images and labels.

    ``size`` is capped at the split's length (then the whole split, in order).
    """
    x, y = prepared.split(split)
    if size < 1:
        raise ValueError(f"subset size must be positive, got {size}")
    if size >= len(y):
        index = torch.arange(len(y))
    else:
        rng = generator("cpu", seed, "eval_subset", split)
        index = torch.randperm(len(y), generator=rng)[:size].sort().values
    index = index.to(prepared.device)
    return prepared.normalize(x.index_select(0, index)), y.index_select(0, index)
