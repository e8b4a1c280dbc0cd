"""Hutchinson estimates of every diagonal block's trace and of the whole Hessian's trace.

Each probe ``v`` is a Rademacher vector over the whole model (``generator("cpu", seed, "probe",
j)``, so probe ``j`` is the same whatever the batching). ``v_bᵀ (H v)_b`` is an unbiased
estimate of ``tr(H_bb)`` (the off-diagonal blocks enter with zero mean) and their sum over blocks
one of ``tr(H)``. Estimates are means over the probes, with standard errors
``std(ddof=1) / sqrt(probes)`` (NaN with a single probe).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from infoopt.hessian.hvp import HessianOperator
from infoopt.seeding import generator


def rademacher(dim: int, seed: int, index: int) -> torch.Tensor:
    """Probe ``index`` of stream ``seed``: ±1 (float32, CPU) of length ``dim``."""
    bits = torch.randint(0, 2, (dim,), generator=generator("cpu", seed, "probe", index))
    return bits.to(torch.float32).mul_(2).sub_(1)


@dataclass(frozen=True)
class TraceEstimate:
    """``samples[j, b]`` = ``v_jᵀ (H v_j)`` restricted to block ``b``."""

    samples: np.ndarray

    @property
    def block_traces(self) -> np.ndarray:
        return self.samples.mean(axis=0)

    @property
    def block_standard_errors(self) -> np.ndarray:
        return _standard_error(self.samples)

    @property
    def trace(self) -> float:
        return float(self.samples.sum(axis=1).mean())

    @property
    def standard_error(self) -> float:
        return float(_standard_error(self.samples.sum(axis=1, keepdims=True))[0])


def _standard_error(samples: np.ndarray) -> np.ndarray:
    probes = samples.shape[0]
    if probes < 2:
        return np.full(samples.shape[1], math.nan)
    return samples.std(axis=0, ddof=1) / math.sqrt(probes)


def hutchinson(
    operator: HessianOperator,
    probes: int,
    seed: int,
    *,
    probe_batch: int = 8,
    progress: bool = False,
) -> TraceEstimate:
    """Per-block and total trace of the Hessian from ``probes`` Rademacher probes,
    ``probe_batch`` of them per pass over the data."""
    if probes < 1 or probe_batch < 1:
        raise ValueError(f"probes and probe_batch must be positive, got {probes}, {probe_batch}")
    space = operator.space
    rows = []
    starts = range(0, probes, probe_batch)
    for start in tqdm(starts, desc="Hutchinson", disable=not progress, leave=False):
        indices = range(start, min(start + probe_batch, probes))
        v = torch.stack([rademacher(space.dim, seed, j) for j in indices])
        v = v.to(operator.device, operator.dtype)
        products = space.split(v * operator.matmul(v))
        per_block = [part.flatten(1).sum(1, dtype=torch.float64) for part in products]
        rows.append(torch.stack(per_block, dim=1).cpu().numpy())
    return TraceEstimate(np.concatenate(rows))
