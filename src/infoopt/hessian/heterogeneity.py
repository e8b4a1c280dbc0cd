"""Two rival explanations of why SGD wins on CNNs and Adam on Transformers, per checkpoint.

- **Block heterogeneity** (Zhang et al. 2024, "Why Transformers Need Adam: A Hessian
  Perspective", arXiv 2402.16788): the mean pairwise Jensen-Shannon distance between the
  spectral densities of the parameter blocks' Hessians (their "JS⁰" at initialization).
  Estimator: each block's density is the empirical distribution of the eigenvalues of its
  sampled principal sub-Hessian ``H[S_b, S_b]`` (the k_b ≤ K eigenvalues the entropy gap is
  computed from, :mod:`infoopt.hessian.blocks`), smoothed with a Gaussian kernel of one
  bandwidth ``h`` for all blocks (:func:`bandwidth`) and evaluated on one grid spanning every
  block's spectrum. It costs no Hessian-vector product beyond the entropy gap's. Zhang et
  al. estimate each block's density by stochastic Lanczos quadrature instead (their σ² = 1e-5
  Gaussian blur, on a scale that depends on the model); a sampled sub-Hessian's spectrum is a
  principal submatrix's, whose eigenvalues interlace the block's (Cauchy), so the densities
  are of the same blocks on the same scale, at k_b points each.
- **Gradient heterogeneity** (Tomihari & Sato 2025, "Understanding Why Adam Outperforms SGD:
  Gradient Heterogeneity in Transformers", arXiv 2502.00213): how unequal the blocks'
  gradient norms ``‖∇_b L‖₂`` are, on the images the Hessian is measured on (one gradient).
  Statistic: the population std of ``ln ‖∇_b L‖₂`` over the blocks (:func:`gradient_heterogeneity`),
  a spread of ratios: it does not change when the loss is rescaled, is 0 for equal norms,
  and one large block does not dominate it as it dominates the coefficient of variation.

Both are pure functions of per-block values (no torch: the table's assembly uses them);
:func:`infoopt.hessian.metrics.block_gradient_norms` computes the gradient norms from a
:class:`~infoopt.hessian.hvp.HessianOperator`'s model and data.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.special import rel_entr

# Points of the common grid the densities are evaluated on.
GRID_POINTS = 2048
# The bandwidth is at least this share of the pooled spectrum's span, so the grid (about four
# points per bandwidth) resolves every kernel.
MIN_BANDWIDTH_SHARE = 1 / 512
# The grid extends this many bandwidths past the extreme eigenvalues.
GRID_MARGIN = 4.0


def bandwidth(spectra: Sequence[np.ndarray]) -> float:
    """The kernel bandwidth for the densities of ``spectra``: Silverman's rule on the pooled
    eigenvalues, ``0.9 · min(std, IQR/1.34) · N^(−1/5)``, at least
    :data:`MIN_BANDWIDTH_SHARE` of their span; 0 where every eigenvalue is the same. One
    bandwidth for every block keeps the distances between blocks comparable, and scaling all
    eigenvalues by c scales it by c, so the distances do not depend on the loss's scale."""
    pooled = np.concatenate([np.asarray(s, dtype=np.float64) for s in spectra])
    span = float(pooled.max() - pooled.min())
    quartiles = np.percentile(pooled, [25, 75])
    spread = min(
        float(pooled.std(ddof=1)) if len(pooled) > 1 else 0.0, (quartiles[1] - quartiles[0]) / 1.34
    )
    silverman = 0.9 * spread * len(pooled) ** (-1 / 5)
    return max(silverman, span * MIN_BANDWIDTH_SHARE)


def spectral_densities(
    spectra: Sequence[np.ndarray], grid_points: int = GRID_POINTS
) -> tuple[np.ndarray, np.ndarray]:
    """(grid, densities): each block's eigenvalues smoothed by a Gaussian kernel of
    :func:`bandwidth` on one common grid, a row per block normalised to sum 1 (a discrete
    distribution, as the Jensen-Shannon distance takes)."""
    h = bandwidth(spectra)
    pooled = np.concatenate([np.asarray(s, dtype=np.float64) for s in spectra])
    grid = np.linspace(pooled.min() - GRID_MARGIN * h, pooled.max() + GRID_MARGIN * h, grid_points)
    densities = np.empty((len(spectra), grid_points))
    for row, eigenvalues in enumerate(spectra):
        z = (grid[None, :] - np.asarray(eigenvalues, dtype=np.float64)[:, None]) / h
        densities[row] = np.exp(-0.5 * z**2).sum(axis=0)
    return grid, densities / densities.sum(axis=1, keepdims=True)


def jensen_shannon_distances(p: np.ndarray, others: np.ndarray) -> np.ndarray:
    """The Jensen-Shannon distance (base 2, in [0, 1]) of the discrete distribution ``p`` to
    each row ``q`` of ``others``: √(½ KL(p‖m) + ½ KL(q‖m)), m = (p + q)/2, as scipy's
    ``jensenshannon``. Written as ½ Σ p ln(p/(p+q)) + ½ Σ q ln(q/(p+q)) + ln 2, since
    halving a subnormal density underflows to 0 and makes KL(p‖m) infinite; a divergence
    that rounding makes slightly negative (equal distributions) counts as 0."""
    total = p[None, :] + others
    divergence = (rel_entr(p[None, :], total) + rel_entr(others, total)).sum(axis=1) / 2
    return np.sqrt(np.maximum((divergence + math.log(2)) / math.log(2), 0.0))


def block_heterogeneity(spectra: Sequence[np.ndarray]) -> float:
    """Mean :func:`jensen_shannon_distances` over all pairs of the blocks'
    :func:`spectral_densities`. NaN for fewer than two blocks; 0 where every eigenvalue of
    every block is the same (one density for all)."""
    spectra = [np.asarray(s, dtype=np.float64) for s in spectra if len(s)]
    if len(spectra) < 2:
        return math.nan
    if bandwidth(spectra) == 0:
        return 0.0
    _, densities = spectral_densities(spectra)
    distances = [
        jensen_shannon_distances(densities[i], densities[i + 1 :])
        for i in range(len(densities) - 1)
    ]
    return float(np.concatenate(distances).mean())


def gradient_heterogeneity(norms: Sequence[float]) -> float:
    """Population std of ``ln ‖∇_b L‖₂`` over the blocks whose gradient is not 0 (a block the
    loss does not depend on has no ratio to the others). NaN for fewer than two such blocks."""
    values = np.asarray(norms, dtype=np.float64)
    values = values[np.isfinite(values) & (values > 0)]
    if len(values) < 2:
        return math.nan
    return float(np.log(values).std(ddof=0))
