"""The optimizer of a training run, built from its spec, and the mode it is evaluated in."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from infoopt.optim.groups import GroupedOptimizer, assign_groups
from infoopt.optim.registry import build_optimizer
from infoopt.records import RunSpec


def has_modes(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``optimizer`` has a train and an eval mode (Schedule-Free's ``train()``/``eval()``,
    which move the model's weights between the training and the deployed point)."""
    if isinstance(optimizer, GroupedOptimizer):
        return any(has_modes(opt) for opt in optimizer.optimizers.values())
    return callable(getattr(optimizer, "train", None)) and callable(
        getattr(optimizer, "eval", None)
    )


def build_run_optimizer(spec: RunSpec, model: torch.nn.Module) -> torch.optim.Optimizer:
    """The optimizer of run ``spec`` over ``model``'s parameters, in train mode: one
    algorithm, or a GroupedOptimizer for an entry with parameter groups."""
    groups = spec.groups
    if groups is None:
        optimizer = build_optimizer(spec.algorithm, model.parameters(), **spec.hparams)
    else:
        named = list(model.named_parameters())
        group_of = assign_groups(groups, named)
        members = {}
        for group, rule in groups.items():
            params = [p for name, p in named if group_of[name] == group]
            # A rule may match nothing in one architecture (ResNet18 has no hidden matrix).
            if params:
                members[group] = build_optimizer(rule["algorithm"], params, **rule["hparams"])
        optimizer = GroupedOptimizer(members, group_of)
    if has_modes(optimizer):
        optimizer.train()
    return optimizer


def parameter_groups(optimizer: torch.optim.Optimizer) -> dict[str, str] | None:
    """Parameter name -> the group that trains it, for a grouped optimizer; else None."""
    return dict(optimizer.group_of) if isinstance(optimizer, GroupedOptimizer) else None


@contextlib.contextmanager
def deployed(optimizer: torch.optim.Optimizer) -> Iterator[None]:
    """Within: the model holds the weights the optimizer would deploy (its eval mode); after,
    back in train mode. Nothing happens for optimizers without modes."""
    if not has_modes(optimizer):
        yield
        return
    optimizer.eval()
    try:
        yield
    finally:
        optimizer.train()
