"""Per-block principal sub-Hessians ``H[S_b, S_b]`` and their spectral metrics (PAPER.md §2).

For block ``b`` (one parameter tensor) a seeded set ``S_b`` of ``k_b = min(numel_b, K)``
coordinates is drawn from ``generator("cpu", seed, "coords", block_name)``: it depends on the
block's name and the seed only, so every checkpoint of a run uses the same coordinates.
``H[S_b, S_b]`` is exact: column ``j`` is ``(H_bb e_j)[S_b]``, from ``k_b`` block products, or,
for a block whose Hessian is its Gauss-Newton block (every block of a ReLU network), from
first-order passes (:mod:`infoopt.hessian.gauss_newton`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from infoopt.entropy import entropy_gap, symmetric_eigenvalues, von_neumann_entropy
from infoopt.hessian.hvp import HessianOperator
from infoopt.hessian.options import POSITIVE_RULES
from infoopt.hessian.space import ParameterSpace
from infoopt.seeding import generator


def block_coordinates(space: ParameterSpace, max_k: int, seed: int) -> list[torch.Tensor]:
    """Sorted coordinate indices ``S_b`` (CPU int64) for every block of ``space``."""
    if max_k < 1:
        raise ValueError(f"the number of coordinates per block must be positive, got {max_k}")
    coords = []
    for name, numel in zip(space.names, space.numels, strict=True):
        rng = generator("cpu", seed, "coords", name)
        coords.append(torch.randperm(numel, generator=rng)[: min(numel, max_k)].sort().values)
    return coords


def sub_hessians(
    operator: HessianOperator,
    coords: list[torch.Tensor],
    blocks: Sequence[int] | None = None,
    *,
    progress: bool = False,
) -> list[np.ndarray]:
    """The symmetrised float64 ``H[S_b, S_b]`` of each of ``blocks`` (default: every block):
    together, in one pass over the data, those whose Hessian is their Gauss-Newton block
    (``operator.gauss_newton``); the others from ``k_b`` block products each."""
    space = operator.space
    blocks = range(len(space)) if blocks is None else blocks
    exact = [b for b in blocks if b in operator.gauss_newton.blocks]
    found = operator.gauss_newton_submatrices(exact, [coords[b] for b in exact], progress=progress)
    known = dict(zip(exact, found, strict=True))
    matrices = []
    for block in tqdm(blocks, desc="sub-Hessians", disable=not progress, leave=False):
        if block in known:
            matrix = known[block].double().cpu().numpy()
        else:
            index = coords[block].to(operator.device)
            units = torch.zeros(
                len(index), space.numels[block], device=operator.device, dtype=operator.dtype
            )
            units[torch.arange(len(index), device=operator.device), index] = 1.0
            # Row j of the product is (H_bb e_{S_j})ᵀ: its entries at S_b are H[S_b, S_j].
            columns = operator.block_matmul(block, units)[:, index]
            matrix = columns.T.double().cpu().numpy()
        matrices.append(0.5 * (matrix + matrix.T))
    return matrices


@dataclass(frozen=True)
class BlockSpectrum:
    """Spectral metrics of one block's sub-Hessian, and its ascending eigenvalues (the block's
    spectral density, :mod:`infoopt.hessian.heterogeneity`)."""

    lambda_min: float
    lambda_max: float
    subtrace: float
    entropy: float
    gap: float
    eigenvalues: np.ndarray = field(repr=False, compare=False)

    def positive(self, rule: str, tol: float = 0.0) -> bool:
        """Positive definite (``"lambda_min"``: λ_min > tol · max|λ|) or positive trace
        (``"trace"``: tr > 0). The relative ``tol`` keeps a singular block (λ_min = 0 up to
        rounding, e.g. the classifier's bias under softmax) from counting as positive."""
        if rule == "lambda_min":
            return self.lambda_min > tol * max(abs(self.lambda_min), abs(self.lambda_max))
        if rule == "trace":
            return self.subtrace > 0
        raise ValueError(f"unknown positivity rule {rule!r}; valid: {', '.join(POSITIVE_RULES)}")


def block_spectrum(matrix: np.ndarray, normalization: str = "abs") -> BlockSpectrum:
    """Metrics of a symmetric matrix from its float64 eigenvalues."""
    eigs = symmetric_eigenvalues(matrix)
    return BlockSpectrum(
        lambda_min=float(eigs[0]),
        lambda_max=float(eigs[-1]),
        subtrace=float(np.trace(matrix)),
        entropy=von_neumann_entropy(eigs, normalization),
        gap=entropy_gap(eigs, normalization),
        eigenvalues=eigs,
    )
