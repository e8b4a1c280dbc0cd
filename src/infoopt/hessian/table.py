"""One checkpoint's Hessian table, assembled from the parts computed for it (pandas only).

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

The numbers come in parts (:mod:`infoopt.hessian.metrics` computes them), each a few rows in
the table's columns plus ``part`` naming it: a block's row (``part`` = :data:`BLOCK`), and the
global estimates :data:`~infoopt.hessian.options.ESTIMATES`, Hutchinson's traces (a row per
block and the global row, ``part`` = ``"traces"``) and Lanczos's top eigenvalue (the global
row, ``part`` = ``"top_eigenvalue"``). :func:`hessian_table` puts them together: each block's
row with its traces, the global row with the estimates, the products and seconds of every
part added up, and the summaries of the blocks.
"""

from __future__ import annotations

import pandas as pd

from infoopt.hessian.aggregate import aggregate_blocks
from infoopt.hessian.options import ESTIMATES

GLOBAL = "__global__"
# The part a row of a partial table belongs to: a block's row, or one of ESTIMATES.
PART = "part"
BLOCK = "block"

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
COLUMNS = BLOCK_COLUMNS | GLOBAL_COLUMNS
# Columns each part fills on the rows it gives (block rows: BLOCK's; the global row: GLOBAL's).
FILLS = {
    BLOCK: [
        *["k", "subtrace", "lambda_min", "lambda_max", "entropy", "gap", "positive"],
        *["eigenvalues", "grad_norm"],
    ],
    "traces": ["trace", "trace_se"],
    "top_eigenvalue": ["lambda_max", "lanczos_products", "lanczos_residual", "lanczos_converged"],
}
# What each part spent; the table's global row holds their sums.
SPENT = ["block_products", "full_products", "seconds"]


def typed(rows: pd.DataFrame, options: dict[str, object]) -> pd.DataFrame:
    """``rows`` in the table's columns and types, followed by the ``options`` columns
    (:meth:`~infoopt.hessian.options.HessianOptions.columns`)."""
    table = rows.reindex(columns=list(COLUMNS)).astype(COLUMNS)
    options_table = pd.DataFrame([options] * len(table))
    options_table["option_micro_batch_size"] = options_table["option_micro_batch_size"].astype(
        "Int64"
    )
    extra = [column for column in rows.columns if column not in COLUMNS]
    return pd.concat([rows[extra].reset_index(drop=True), table, options_table], axis=1)


def hessian_table(parts: pd.DataFrame) -> pd.DataFrame:
    """The table of a checkpoint from the rows of all its parts, in any order, from any number
    of jobs; columns other than the table's (a run's identity, the options) must agree and
    lead the table. A ValueError says when the parts do not make up one table."""
    labels = [column for column in parts.columns if column not in COLUMNS and column != PART]
    if parts.empty or len(parts[labels].drop_duplicates()) != 1:
        raise ValueError("the parts are of different checkpoints or options (or there are none)")
    found = parts.loc[parts["block"] == GLOBAL, PART].value_counts()
    missing = [name for name in ESTIMATES if found.get(name, 0) != 1]
    if missing:
        raise ValueError(f"the parts do not hold the {', '.join(missing)} exactly once")
    traces = parts[parts[PART] == "traces"]
    is_global = traces["block"] == GLOBAL
    rows = parts[parts[PART] == BLOCK].set_index("block")
    if rows.index.duplicated().any() or set(rows.index) != set(traces.loc[~is_global, "block"]):
        raise ValueError("the parts do not hold each block's row exactly once")
    blocks = traces[~is_global].drop(columns=FILLS[BLOCK]).join(rows[FILLS[BLOCK]], on="block")
    top = parts[parts[PART] == "top_eigenvalue"][FILLS["top_eigenvalue"]]
    summary = traces[is_global].iloc[0].to_dict() | top.iloc[0].to_dict()
    summary |= {column: parts[column].sum(min_count=1) for column in SPENT}
    if blocks["k"].notna().any():  # a checkpoint without weights has no summaries
        summary |= aggregate_blocks(blocks, str(parts["option_aggregation"].iloc[0]))
    columns = [column for column in parts.columns if column != PART]
    table = pd.concat([blocks, pd.DataFrame([summary])], ignore_index=True)[columns]
    return table.astype(parts[columns].dtypes.to_dict())
