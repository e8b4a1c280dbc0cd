"""Per-checkpoint summaries of the per-block metrics: the quantities of Tables 2–5.

- ``positive_ratio`` (Table 2): fraction of the blocks flagged positive;
- ``sharpness`` (Table 3): ``Σ_b |tr(H_bb)|`` over all blocks (Hutchinson block traces);
- ``gap_mean`` / ``gap_std`` (Tables 4, 5): mean and population std (ddof = 0) of the blocks'
  entropy gaps, over ``"all"`` blocks or only the ``"positive"`` ones. Blocks whose gap is
  undefined (a zero sub-Hessian; or no positive eigenvalue under ``"clip"``) are left out;
  ``gap_blocks`` says how many entered;
- ``block_heterogeneity`` / ``gradient_heterogeneity``: the rival explanations
  (:mod:`infoopt.hessian.heterogeneity`), over every block with a spectrum or a gradient
  norm, whatever the aggregation (Zhang et al. and Tomihari & Sato compare all blocks); NaN
  for a table without those columns.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from infoopt.hessian.heterogeneity import block_heterogeneity, gradient_heterogeneity
from infoopt.hessian.options import AGGREGATIONS


def aggregate_blocks(blocks: pd.DataFrame, aggregation: str = "all") -> dict[str, float]:
    """Summaries of a per-block table with columns ``trace``, ``gap`` and ``positive`` (and
    ``eigenvalues`` and ``grad_norm`` for the heterogeneities)."""
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {aggregation!r}; valid: {', '.join(AGGREGATIONS)}")
    if blocks.empty:
        raise ValueError("no blocks to aggregate")
    flags = blocks["positive"].astype("boolean")
    known = flags.dropna()
    selected = blocks if aggregation == "all" else blocks[flags.fillna(False).to_numpy()]
    gaps = selected["gap"].to_numpy(dtype=np.float64)
    gaps = gaps[~np.isnan(gaps)]
    return {
        "positive_ratio": float(known.mean()) if len(known) else math.nan,
        "sharpness": float(np.abs(blocks["trace"].to_numpy(dtype=np.float64)).sum()),
        "gap_mean": float(gaps.mean()) if len(gaps) else math.nan,
        "gap_std": float(gaps.std(ddof=0)) if len(gaps) else math.nan,
        "gap_blocks": len(gaps),
        "block_heterogeneity": block_heterogeneity(_spectra(blocks)),
        "gradient_heterogeneity": gradient_heterogeneity(blocks.get("grad_norm", ())),
    }


def _spectra(blocks: pd.DataFrame) -> list[np.ndarray]:
    """The blocks' eigenvalues, of those that have them (a missing one is None or NaN)."""
    column = blocks.get("eigenvalues", ())
    return [np.asarray(e, dtype=np.float64) for e in column if np.ndim(e) == 1 and len(e)]
