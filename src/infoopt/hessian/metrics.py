"""One checkpoint's Hessian table: every per-block metric plus the model's global numbers.

The table (one parquet file per checkpoint) has one row per parameter block, in
``named_parameters()`` order, and a last row whose ``block`` is :data:`GLOBAL`:

- per block: ``numel``, ``k`` (coordinates sampled), ``trace`` and ``trace_se`` (Hutchinson
  estimate of ``tr(H_bb)`` and its standard error), ``subtrace`` (exact ``tr H[S_b, S_b]``),
  ``lambda_min``, ``lambda_max``, ``entropy``, ``gap`` (of ``H[S_b, S_b]``) and ``positive``;
- on the :data:`GLOBAL` row the same columns describe the whole model where they make sense
  (``numel`` = all parameters; ``trace``/``trace_se`` = Hutchinson ``tr(H)``; ``lambda_max`` =
  the top eigenvalue by Lanczos; the others are missing), and the columns that only it fills
  hold the checkpoint's summaries: ``positive_ratio``, ``sharpness``, ``gap_mean``, ``gap_std``,
  ``gap_blocks`` (:mod:`infoopt.hessian.aggregate`), ``lanczos_products``, ``lanczos_residual``,
  ``lanczos_converged``, ``block_products``, ``full_products`` (Hessian-vector products spent;
  ``block_products`` counts the sub-Hessians' columns, also those of blocks computed from
  first-order passes, :mod:`~infoopt.hessian.gauss_newton`) and ``seconds``;
- every row carries the options used, as ``option_<name>`` columns.

Select ``block != GLOBAL`` for per-block analyses and ``block == GLOBAL`` for Tables 2–5.

Sharding: the blocks' sub-Hessians are independent of each other and of the global estimates
(Hutchinson, Lanczos), so one checkpoint's work splits into shares (:func:`shard_plan`), each
computed alone as a partial table (``checkpoint_hessian_table(..., shard=(i, n))``) and
combined by :func:`merge_hessian_tables`. The unsharded table is the merge of one share, so
both run the same operations and give the same numbers (``seconds`` aside).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

import pandas as pd
import torch
from torch import nn

from infoopt.hessian.aggregate import aggregate_blocks
from infoopt.hessian.blocks import block_coordinates, block_spectrum, sub_hessians
from infoopt.hessian.heterogeneity import block_gradient_norms
from infoopt.hessian.hvp import HessianOperator
from infoopt.hessian.options import HessianOptions
from infoopt.hessian.space import ParameterSpace
from infoopt.hessian.spectrum import lanczos_top_eigenvalue
from infoopt.hessian.trace import hutchinson

GLOBAL = "__global__"

BLOCK_COLUMNS = {
    "block": "string",
    "numel": "int64",
    "k": "Int64",
    "trace": "float64",
    "trace_se": "float64",
    "subtrace": "float64",
    "lambda_min": "float64",
    "lambda_max": "float64",
    "entropy": "float64",
    "gap": "float64",
    "positive": "boolean",
    # The sub-Hessian's eigenvalues and the block's gradient norm: block and gradient
    # heterogeneity (infoopt.hessian.heterogeneity).
    "eigenvalues": "object",
    "grad_norm": "float64",
}
GLOBAL_COLUMNS = {
    "positive_ratio": "float64",
    "sharpness": "float64",
    "gap_mean": "float64",
    "gap_std": "float64",
    "gap_blocks": "Int64",
    "block_heterogeneity": "float64",
    "gradient_heterogeneity": "float64",
    "lanczos_products": "Int64",
    "lanczos_residual": "float64",
    "lanczos_converged": "boolean",
    "block_products": "Int64",
    "full_products": "Int64",
    "seconds": "float64",
}


def _finish(blocks: pd.DataFrame, summary: dict, options: HessianOptions) -> pd.DataFrame:
    table = pd.concat([blocks, pd.DataFrame([summary])], ignore_index=True)
    table = table.reindex(columns=list(BLOCK_COLUMNS) + list(GLOBAL_COLUMNS))
    table = table.astype(BLOCK_COLUMNS | GLOBAL_COLUMNS)
    options_table = pd.DataFrame([options.columns()] * len(table))
    options_table["option_micro_batch_size"] = options_table["option_micro_batch_size"].astype(
        "Int64"
    )
    return pd.concat([table, options_table], axis=1)


def shard_plan(
    numels: Sequence[int], options: HessianOptions, shards: int
) -> list[tuple[list[int], bool]]:
    """Split a checkpoint's work into ``shards`` shares of about equal predicted cost.

    Each share is (its blocks, whether it computes the global estimates). A block costs its
    ``k_b`` block products; the global estimates, ``probes`` + ``lanczos_max_iter`` full
    products, are one indivisible item. Longest first onto the least loaded share: a
    deterministic plan from the block sizes and options alone.
    """
    if shards < 1:
        raise ValueError(f"shards must be positive, got {shards}")
    items = [(min(n, options.max_k), b) for b, n in enumerate(numels)]
    items.append((options.probes + options.lanczos_max_iter, len(numels)))
    loads = [0] * shards
    shares: list[tuple[list[int], bool]] = [([], False) for _ in range(shards)]
    for cost, item in sorted(items, key=lambda c: (-c[0], c[1])):
        target = loads.index(min(loads))
        loads[target] += cost
        blocks, global_share = shares[target]
        shares[target] = (blocks, True) if item == len(numels) else (blocks + [item], global_share)
    return [(sorted(blocks), global_share) for blocks, global_share in shares]


def checkpoint_hessian_table(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    options: HessianOptions | None = None,
    *,
    device: str | torch.device | None = None,
    progress: bool = False,
    shard: tuple[int, int] | None = None,
) -> pd.DataFrame:
    """Measure the Hessian of the mean cross-entropy of ``model`` (eval mode) on ``(x, y)``.

    With ``shard=(i, n)``, only share ``i`` of :func:`shard_plan`'s ``n``: a partial table
    (columns ``shard`` and ``shards`` added) for :func:`merge_hessian_tables`.
    """
    options = options or HessianOptions()
    started = time.perf_counter()
    operator = HessianOperator(
        model,
        x,
        y,
        micro_batch_size=options.micro_batch_size,
        memory_budget_gb=options.memory_budget_gb,
        vector_batch=options.vector_batch,
        dtype=options.dtype,
        device=device,
    )
    if progress:
        print(f"Hessian operator: {operator.plan}", file=sys.stderr)
    space = operator.space
    index, count = shard or (0, 1)
    if not 0 <= index < count:
        raise ValueError(f"shard {index} of {count} does not exist")
    blocks, global_share = shard_plan(space.numels, options, count)[index]
    coords = block_coordinates(space, options.max_k, options.seed)
    matrices = sub_hessians(operator, coords, blocks, progress=progress)
    spectra = [block_spectrum(matrix, options.normalization) for matrix in matrices]
    table = pd.DataFrame({"block": space.names, "numel": space.numels})
    table.loc[blocks, "k"] = [len(coords[b]) for b in blocks]
    for column in ("subtrace", "lambda_min", "lambda_max", "entropy", "gap"):
        table.loc[blocks, column] = [getattr(s, column) for s in spectra]
    table.loc[blocks, "positive"] = [
        s.positive(options.positive, options.positive_tol) for s in spectra
    ]
    eigenvalues = dict(zip(blocks, (s.eigenvalues for s in spectra), strict=True))
    table["eigenvalues"] = pd.Series([eigenvalues.get(b) for b in range(len(space))], dtype=object)

    summary: dict[str, object] = {"block": GLOBAL, "numel": space.dim}
    if global_share:
        table["grad_norm"] = block_gradient_norms(operator)
    if global_share and options.probes:
        estimate = hutchinson(
            operator,
            options.probes,
            options.seed,
            probe_batch=options.probe_batch,
            progress=progress,
        )
        table["trace"], table["trace_se"] = estimate.block_traces, estimate.block_standard_errors
        summary |= {"trace": estimate.trace, "trace_se": estimate.standard_error}
    if global_share and options.lanczos_max_iter:
        top = lanczos_top_eigenvalue(
            lambda v: operator.matmul(v[None])[0],
            space.dim,
            seed=options.seed,
            max_iter=options.lanczos_max_iter,
            tol=options.lanczos_tol,
            device=operator.device,
            dtype=operator.dtype,
            progress=progress,
        )
        summary |= {
            "lambda_max": top.eigenvalue,
            "lanczos_products": top.products,
            "lanczos_residual": top.residual,
            "lanczos_converged": top.converged,
        }
    summary |= {
        "block_products": operator.block_products,
        "full_products": operator.full_products,
        "seconds": time.perf_counter() - started,
    }
    part = _finish(table, summary, options)
    if shard is None:
        return merge_hessian_tables([part])
    return part.assign(shard=index, shards=count)


# Global-row columns that each share adds to; the others come from the one share computing them.
_ADDED = ("block_products", "full_products", "seconds")


def merge_hessian_tables(parts: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """The table of a checkpoint from the partial tables of all its shares.

    Each block's metrics come from the share that computed them, the traces and the top
    eigenvalue from the global share; products and seconds add up; the summaries of Tables 2–5
    are computed from the merged blocks. A ValueError says when the shares do not fit together.
    """
    if not parts:
        raise ValueError("no partial Hessian tables to merge")
    counts = {int(part["shards"].iloc[0]) if "shards" in part else 1 for part in parts}
    found = sorted(int(part["shard"].iloc[0]) if "shard" in part else 0 for part in parts)
    if len(counts) != 1 or found != list(range(counts.pop())):
        raise ValueError(f"the shares do not make up one checkpoint's table: shards {found}")
    parts = [part.drop(columns=["shard", "shards"], errors="ignore") for part in parts]
    labels = [c for c in parts[0].columns if c not in BLOCK_COLUMNS and c not in GLOBAL_COLUMNS]
    for part in parts[1:]:
        if not part[labels].equals(parts[0][labels]) or not part["block"].equals(parts[0]["block"]):
            raise ValueError("the shares were computed with different options or checkpoints")
    merged = parts[0].copy()
    for part in parts[1:]:
        merged = merged.combine_first(part)[parts[0].columns]
    is_global = merged["block"] == GLOBAL
    for column in _ADDED:
        merged.loc[is_global, column] = sum(part.loc[is_global, column].iloc[0] for part in parts)
    blocks = merged[~is_global].reset_index(drop=True)
    summary = merged[is_global].iloc[0].to_dict() | aggregate_blocks(blocks, _aggregation(merged))
    table = pd.concat([blocks, pd.DataFrame([summary])], ignore_index=True)
    return table.astype(merged.dtypes.to_dict())


def share_of_table(
    table: pd.DataFrame, options: HessianOptions, shard: tuple[int, int]
) -> pd.DataFrame:
    """The partial table that share ``shard`` of :func:`shard_plan` computes, cut from a whole
    table (so that a change of ``shards`` costs no product already computed): merging the
    shares cut from a table gives that table back (``seconds`` all in the global share)."""
    index, count = shard
    is_global = (table["block"] == GLOBAL).to_numpy()
    numels = table.loc[~is_global, "numel"].tolist()
    blocks, global_share = shard_plan(numels, options, count)[index]
    part = table.copy()  # None below: NaN in float columns, NA in nullable ones
    others = [b for b in range(len(numels)) if b not in blocks]
    spectral = ["k", "subtrace", "lambda_min", "lambda_max", "entropy", "gap", "positive"]
    spectral.append("eigenvalues")
    part.loc[others, spectral] = None
    summaries = ["positive_ratio", "sharpness", "gap_mean", "gap_std", "gap_blocks"]
    summaries += ["block_heterogeneity", "gradient_heterogeneity"]
    part.loc[is_global, summaries] = pd.NA
    part.loc[is_global, "block_products"] = table.loc[blocks, "k"].sum()
    if not global_share:
        part[["trace", "trace_se", "grad_norm"]] = None
        lanczos = ["lambda_max", "lanczos_products", "lanczos_residual", "lanczos_converged"]
        part.loc[is_global, lanczos] = None
        part.loc[is_global, ["full_products", "seconds"]] = 0
    return part.astype(table.dtypes.to_dict()).assign(shard=index, shards=count)


def _aggregation(table: pd.DataFrame) -> str:
    return str(table["option_aggregation"].iloc[0])


def missing_hessian_table(
    space: ParameterSpace, options: HessianOptions | None = None
) -> pd.DataFrame:
    """The table of a checkpoint that has no weights (a diverged run): every metric missing."""
    options = options or HessianOptions()
    blocks = pd.DataFrame({"block": space.names, "numel": space.numels})
    return _finish(blocks, {"block": GLOBAL, "numel": space.dim}, options)
