"""The top Hessian eigenvalue by Lanczos iteration.

Lanczos builds an orthonormal Krylov basis ``q_1..q_m`` with one Hessian-vector product per step
and takes the largest eigenvalue θ of the tridiagonal ``T_m = Qᵀ H Q`` (a Ritz value). It stops
when the Ritz pair's residual ``‖H y − θ y‖ = β_{m+1} |s_m|`` (``s`` the eigenvector of
``T_m``, ``s_m`` its last entry) is at most ``tol · |θ|``; then ``|θ − λ| <= tol · |θ|`` for
some eigenvalue λ. It needs far fewer products than power iteration, whose error shrinks only
like ``(λ_2/λ_1)^m``. The basis is kept and re-orthogonalised at every step (twice), so rounding
cannot produce spurious copies of converged eigenvalues.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.linalg import eigh_tridiagonal
from tqdm.auto import tqdm

from infoopt.seeding import generator


@dataclass(frozen=True)
class LanczosResult:
    eigenvalue: float
    products: int
    residual: float
    converged: bool


def lanczos_top_eigenvalue(
    matvec: Callable[[torch.Tensor], torch.Tensor],
    dim: int,
    *,
    seed: int,
    max_iter: int = 100,
    tol: float = 1e-4,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    progress: bool = False,
) -> LanczosResult:
    """Largest eigenvalue of the symmetric operator ``matvec`` on vectors of length ``dim``,
    from a start vector seeded by ``generator("cpu", seed, "lanczos")``."""
    if max_iter < 1 or not tol > 0:
        raise ValueError(f"need max_iter >= 1 and tol > 0, got {max_iter}, {tol}")
    start = torch.randn(dim, generator=generator("cpu", seed, "lanczos"), dtype=torch.float64)
    q = (start / start.norm()).to(device, dtype)
    basis = [q]
    alphas: list[float] = []
    betas: list[float] = []
    theta, residual = math.nan, math.inf
    steps = tqdm(range(max_iter), desc="Lanczos", disable=not progress, leave=False)
    for _ in steps:
        w = matvec(q)
        alpha = torch.dot(w, q)
        w = w - alpha * q
        if betas:
            w -= betas[-1] * basis[-2]
        for _ in range(2):
            for vector in basis:
                w -= torch.dot(vector, w) * vector
        alphas.append(float(alpha))
        beta = float(w.norm())
        ritz, vectors = eigh_tridiagonal(np.array(alphas), np.array(betas))
        theta, residual = float(ritz[-1]), beta * abs(float(vectors[-1, -1]))
        steps.set_postfix(theta=f"{theta:.6g}", residual=f"{residual:.2g}")
        # beta == 0: the Krylov space is invariant and the Ritz values are exact eigenvalues.
        if residual <= tol * abs(theta) or beta == 0.0 or len(alphas) == dim:
            return LanczosResult(theta, len(alphas), residual, True)
        betas.append(beta)
        q = w / beta
        basis.append(q)
    return LanczosResult(theta, len(alphas), residual, False)
