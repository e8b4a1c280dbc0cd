"""Spectral entropies of symmetric matrices (PAPER.md §2).

A spectrum λ_1..λ_n becomes a probability vector ``p`` (``normalization``):

- ``"abs"`` (default): ``p_i = |λ_i| / Σ_j |λ_j|``: negative curvature counts by its size;
- ``"clip"``: ``p_i = max(λ_i, 0) / Σ_j max(λ_j, 0)``: negative curvature counts as zero.

Then the von Neumann entropy is ``H = -Σ p_i ln p_i`` (natural log, ``0 ln 0 = 0``), the
entropy gap is ``ln n − H = KL(p ‖ uniform)`` (``n`` counts every eigenvalue, zeros included)
and the Rényi entropy is ``ln(Σ p_i^α) / (1 − α)``.

Degenerate spectra: when the normaliser is zero (an all-zero spectrum, or an all-non-positive one
under ``"clip"``) the distribution does not exist, and every function returns NaN for it rather
than a number that would read as "perfectly isotropic" (gap 0).

All functions take a numpy array or torch tensor of shape ``(..., n)``, compute in float64
and reduce the last axis: a float for one spectrum, an array for a batch.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

NORMALIZATIONS = ("abs", "clip")


def _as_float64(values: Any) -> np.ndarray:
    if hasattr(values, "detach"):  # a torch tensor, possibly on a GPU or requiring grad
        values = values.detach().cpu().double().numpy()
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 0 or array.shape[-1] == 0:
        raise ValueError(f"expected a spectrum of shape (..., n) with n >= 1, got {array.shape}")
    return array


def _result(values: np.ndarray) -> float | np.ndarray:
    return float(values) if values.ndim == 0 else values


def spectrum_probabilities(eigs: Any, normalization: str = "abs") -> np.ndarray:
    """The probability vector of a spectrum (NaN everywhere for a degenerate one)."""
    eigs = _as_float64(eigs)
    if normalization == "abs":
        weights = np.abs(eigs)
    elif normalization == "clip":
        weights = np.clip(eigs, 0.0, None)
    else:
        raise ValueError(
            f"unknown normalization {normalization!r}; valid: {', '.join(NORMALIZATIONS)}"
        )
    total = weights.sum(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, weights / total, np.nan)


def _entropy_of(p: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        terms = np.where(p > 0, -p * np.log(p), 0.0)
    return np.where(np.isnan(p).any(axis=-1), np.nan, terms.sum(axis=-1))


def von_neumann_entropy(eigs: Any, normalization: str = "abs") -> float | np.ndarray:
    """``H = -Σ p_i ln p_i`` of the spectrum's probability vector."""
    return _result(_entropy_of(spectrum_probabilities(eigs, normalization)))


def entropy_gap(eigs: Any, normalization: str = "abs") -> float | np.ndarray:
    """``ln n − H`` in [0, ln n]; 0 exactly when all |λ_i| (or clipped λ_i) are equal."""
    p = spectrum_probabilities(eigs, normalization)
    gap = math.log(p.shape[-1]) - _entropy_of(p)
    # ln n − H >= 0 holds exactly; only rounding can push it below zero.
    return _result(np.where(np.isnan(gap), np.nan, np.maximum(gap, 0.0)))


def renyi_entropy(eigs: Any, alpha: float, normalization: str = "abs") -> float | np.ndarray:
    """``ln(Σ p_i^α) / (1 − α)`` for α >= 0; α = 1 is the von Neumann limit, α = inf is
    ``-ln max p_i``, α = 0 is ln of the number of non-zero p_i."""
    if not alpha >= 0:
        raise ValueError(f"Rényi order alpha must be >= 0, got {alpha!r}")
    p = spectrum_probabilities(eigs, normalization)
    if alpha == 1:
        return _result(_entropy_of(p))
    if math.isinf(alpha):
        return _result(-np.log(p.max(axis=-1)))
    with np.errstate(invalid="ignore", divide="ignore"):
        powers = np.where(p > 0, p**alpha, 0.0)
        power_sum = np.where(np.isnan(p).any(axis=-1), np.nan, powers.sum(axis=-1))
        return _result(np.log(power_sum) / (1.0 - alpha))


def symmetric_eigenvalues(matrix: Any) -> np.ndarray:
    """Eigenvalues (ascending, float64) of ``(A + Aᵀ)/2`` for a square matrix or a batch."""
    if hasattr(matrix, "detach"):
        matrix = matrix.detach().cpu().double().numpy()
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.ndim < 2 or matrix.shape[-1] != matrix.shape[-2]:
        raise ValueError(f"expected a square matrix (..., n, n), got shape {matrix.shape}")
    return np.linalg.eigvalsh(0.5 * (matrix + np.swapaxes(matrix, -1, -2)))


def matrix_entropy(
    matrix: Any, alpha: float = 1.0, normalization: str = "abs"
) -> float | np.ndarray:
    """Rényi-α (default von Neumann) entropy of a symmetric matrix's trace-normalised spectrum."""
    return renyi_entropy(symmetric_eigenvalues(matrix), alpha, normalization)
