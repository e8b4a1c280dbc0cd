"""How the workflow splits one checkpoint's Hessian into shares that run as parallel jobs.

A share is a list of blocks, whose rows it computes, and a list of the global estimates
(:data:`~infoopt.hessian.options.ESTIMATES`). A plan gives every block and every estimate to
exactly one of its shares, balanced by the seconds the cost model predicts for each
(:func:`~infoopt.hessian.cost.item_seconds`: a Gauss-Newton block's columns are cheap, an
estimate's full products dear). The numerics know nothing of shares
(:mod:`infoopt.hessian.metrics`) and the store keeps each block's rows and each estimate on its
own (:mod:`infoopt.hessian.job`), so every plan gives the same table and a new plan computes
nothing that is stored. An unsharded job is the one share of a plan of one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from infoopt.hessian.cost import item_seconds
from infoopt.hessian.options import HessianOptions


@dataclass(frozen=True)
class Share:
    """The blocks (indices in ``named_parameters()`` order) and estimates one job computes."""

    blocks: tuple[int, ...]
    estimates: tuple[str, ...]


def balance(
    block_seconds: Sequence[float], estimate_seconds: Mapping[str, float], count: int
) -> list[Share]:
    """``count`` shares of the blocks and the estimates, of about equal total seconds: the
    dearest item first onto the least loaded share (ties: blocks in order, then estimates), so
    the plan is a function of the costs alone."""
    if count < 1:
        raise ValueError(f"shards must be positive, got {count}")
    items = [(seconds, (0, b)) for b, seconds in enumerate(block_seconds)]
    names = list(estimate_seconds)
    items += [(estimate_seconds[name], (1, i)) for i, name in enumerate(names)]
    loads = [0.0] * count
    chosen: list[list[tuple[int, int]]] = [[] for _ in range(count)]
    for seconds, item in sorted(items, key=lambda c: (-c[0], c[1])):
        target = loads.index(min(loads))
        loads[target] += seconds
        chosen[target].append(item)
    return [
        Share(
            blocks=tuple(sorted(i for kind, i in share if kind == 0)),
            estimates=tuple(names[i] for kind, i in sorted(share) if kind == 1),
        )
        for share in chosen
    ]


def plan_shares(
    options: HessianOptions, model: dict[str, Any], count: int, device_kind: str = "cpu"
) -> list[Share]:
    """The plan of ``count`` shares for a checkpoint of ``model`` (:func:`~infoopt.models.
    build_model`'s keyword arguments), balanced by its predicted costs on ``device_kind``."""
    return balance(*item_seconds(options, model, device_kind=device_kind), count)
