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
  ``lanczos_converged``, ``block_products``, ``full_products`` (Hessian-vector products spent)
  and ``seconds``;
- every row carries the options used, as ``option_<name>`` columns.

Select ``block != GLOBAL`` for per-block analyses and ``block == GLOBAL`` for Tables 2–5.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
import torch
from torch import nn

from infoopt.hessian.aggregate import aggregate_blocks
from infoopt.hessian.blocks import block_coordinates, block_spectrum, sub_hessians
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
}
GLOBAL_COLUMNS = {
    "positive_ratio": "float64",
    "sharpness": "float64",
    "gap_mean": "float64",
    "gap_std": "float64",
    "gap_blocks": "Int64",
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


def checkpoint_hessian_table(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    options: HessianOptions | None = None,
    *,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Measure the Hessian of the mean cross-entropy of ``model`` (eval mode) on ``(x, y)``."""
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
    space = operator.space
    coords = block_coordinates(space, options.max_k, options.seed)
    matrices = sub_hessians(operator, coords, progress=progress)
    spectra = [block_spectrum(matrix, options.normalization) for matrix in matrices]

    if options.probes:
        estimate = hutchinson(
            operator,
            options.probes,
            options.seed,
            probe_batch=options.probe_batch,
            progress=progress,
        )
        traces, trace_ses = estimate.block_traces, estimate.block_standard_errors
        total, total_se = estimate.trace, estimate.standard_error
    else:
        traces = trace_ses = np.full(len(space), math.nan)
        total = total_se = math.nan

    summary: dict[str, object] = {"block": GLOBAL, "numel": space.dim}
    if options.lanczos_max_iter:
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

    blocks = pd.DataFrame(
        {
            "block": space.names,
            "numel": space.numels,
            "k": [len(c) for c in coords],
            "trace": traces,
            "trace_se": trace_ses,
            "subtrace": [s.subtrace for s in spectra],
            "lambda_min": [s.lambda_min for s in spectra],
            "lambda_max": [s.lambda_max for s in spectra],
            "entropy": [s.entropy for s in spectra],
            "gap": [s.gap for s in spectra],
            "positive": [s.positive(options.positive, options.positive_tol) for s in spectra],
        }
    )
    summary |= aggregate_blocks(blocks, options.aggregation)
    summary |= {
        "trace": total,
        "trace_se": total_se,
        "block_products": operator.block_products,
        "full_products": operator.full_products,
        "seconds": time.perf_counter() - started,
    }
    return _finish(blocks, summary, options)


def missing_hessian_table(
    space: ParameterSpace, options: HessianOptions | None = None
) -> pd.DataFrame:
    """The table of a checkpoint that has no weights (a diverged run): every metric missing."""
    options = options or HessianOptions()
    blocks = pd.DataFrame({"block": space.names, "numel": space.numels})
    return _finish(blocks, {"block": GLOBAL, "numel": space.dim}, options)
