"""The numbers of a checkpoint's Hessian, in parts that :mod:`infoopt.hessian.table` assembles.

- :func:`block_rows`: the rows of a list of blocks, the spectra of their principal sub-Hessians;
- :func:`trace_rows`: Hutchinson's traces, per block and of the whole model;
- :func:`top_eigenvalue_row`: the whole model's top eigenvalue, by Lanczos.

A part's numbers depend on the model, the data and the options alone, not on what else the same
operator computes: a block's coordinates are seeded by its name, the probes and the Lanczos start
by the seed, and the Gauss-Newton pass is planned for the whole model. So any grouping of the
parts gives the same table, bit for bit (``seconds`` aside).
:func:`checkpoint_hessian_table` computes every part with one operator.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from infoopt.hessian.blocks import block_coordinates, block_spectrum, sub_hessians
from infoopt.hessian.hvp import HessianOperator
from infoopt.hessian.options import ESTIMATES, HessianOptions
from infoopt.hessian.space import ParameterSpace
from infoopt.hessian.spectrum import lanczos_top_eigenvalue
from infoopt.hessian.table import BLOCK, GLOBAL, PART, hessian_table, typed
from infoopt.hessian.trace import hutchinson


def hessian_operator(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    options: HessianOptions,
    *,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> HessianOperator:
    """The Hessian of the mean cross-entropy of ``model`` (eval mode) on ``(x, y)``, as
    ``options`` say to multiply with it."""
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
    return operator


def block_gradient_norms(operator) -> np.ndarray:
    """``‖∇_b L‖₂`` per block of ``operator`` (a HessianOperator: its eval-mode model copy, its
    data and micro-batches), ``L`` the mean cross-entropy the Hessian is of: one gradient,
    summed over the micro-batches, no graph kept."""
    totals = [torch.zeros_like(p) for p in operator.params]
    for batch in operator.micro_batches:
        weight = len(operator.y[batch]) / operator.num_samples
        loss = F.cross_entropy(operator.model(operator.x[batch]), operator.y[batch]) * weight
        grads = torch.autograd.grad(
            loss, operator.params, allow_unused=True, materialize_grads=True
        )
        for total, grad in zip(totals, grads, strict=True):
            total += grad
    return np.array([float(torch.linalg.vector_norm(t.double())) for t in totals])


def block_rows(
    operator: HessianOperator,
    blocks: Sequence[int],
    options: HessianOptions,
    progress: bool = False,
) -> pd.DataFrame:
    """The rows of ``blocks`` (indices into ``operator.space``): each one's ``k`` coordinates'
    sub-Hessian spectrum (its eigenvalues too), its gradient's norm, its ``k`` columns as
    ``block_products`` and, as ``seconds``, its share by columns of the time they took together
    (Gauss-Newton blocks share one pass)."""
    started = time.perf_counter()
    space = operator.space
    coords = block_coordinates(space, options.max_k, options.seed)
    spectra = [
        block_spectrum(matrix, options.normalization)
        for matrix in sub_hessians(operator, coords, blocks, progress=progress)
    ]
    grad_norms = block_gradient_norms(operator) if len(blocks) else []
    ks = [len(coords[b]) for b in blocks]
    seconds = time.perf_counter() - started
    return pd.DataFrame(
        {
            PART: BLOCK,
            "block": [space.names[b] for b in blocks],
            "numel": [space.numels[b] for b in blocks],
            "k": ks,
            "subtrace": [s.subtrace for s in spectra],
            "lambda_min": [s.lambda_min for s in spectra],
            "lambda_max": [s.lambda_max for s in spectra],
            "entropy": [s.entropy for s in spectra],
            "gap": [s.gap for s in spectra],
            "positive": [s.positive(options.positive, options.positive_tol) for s in spectra],
            "eigenvalues": [s.eigenvalues for s in spectra],
            "grad_norm": [grad_norms[b] for b in blocks],
            "block_products": ks,
            "seconds": [seconds * k / sum(ks) for k in ks],
        }
    )


def _estimate_rows(space: ParameterSpace, name: str) -> pd.DataFrame:
    """The rows an estimate fills: Hutchinson's traces every block's and the global row,
    Lanczos's top eigenvalue the global row."""
    names, numels = (space.names, space.numels) if name == "traces" else ([], [])
    return pd.DataFrame({PART: name, "block": [*names, GLOBAL], "numel": [*numels, space.dim]})


def trace_rows(
    operator: HessianOperator, options: HessianOptions, progress: bool = False
) -> pd.DataFrame:
    """Hutchinson's estimates of every block's trace and of the whole trace, with their
    standard errors, from ``options.probes`` probes (none: missing)."""
    started, products = time.perf_counter(), operator.full_products
    rows = _estimate_rows(operator.space, "traces")
    if options.probes:
        estimate = hutchinson(
            operator,
            options.probes,
            options.seed,
            probe_batch=options.probe_batch,
            progress=progress,
        )
        rows["trace"] = [*estimate.block_traces, estimate.trace]
        rows["trace_se"] = [*estimate.block_standard_errors, estimate.standard_error]
    spent = [operator.full_products - products, time.perf_counter() - started]
    rows.loc[rows["block"] == GLOBAL, ["full_products", "seconds"]] = spent
    return rows


def top_eigenvalue_row(
    operator: HessianOperator, options: HessianOptions, progress: bool = False
) -> pd.DataFrame:
    """The top eigenvalue of the whole Hessian by Lanczos (``lanczos_max_iter`` 0: missing)."""
    started, products = time.perf_counter(), operator.full_products
    row = _estimate_rows(operator.space, "top_eigenvalue")
    if options.lanczos_max_iter:
        top = lanczos_top_eigenvalue(
            lambda v: operator.matmul(v[None])[0],
            operator.space.dim,
            seed=options.seed,
            max_iter=options.lanczos_max_iter,
            tol=options.lanczos_tol,
            device=operator.device,
            dtype=operator.dtype,
            progress=progress,
        )
        row["lambda_max"], row["lanczos_products"] = top.eigenvalue, top.products
        row["lanczos_residual"], row["lanczos_converged"] = top.residual, top.converged
    row["full_products"] = operator.full_products - products
    row["seconds"] = time.perf_counter() - started
    return row


ESTIMATORS = {"traces": trace_rows, "top_eigenvalue": top_eigenvalue_row}


def hessian_parts(
    operator: HessianOperator,
    options: HessianOptions,
    blocks: Sequence[int],
    estimates: Sequence[str],
    progress: bool = False,
) -> pd.DataFrame:
    """The rows of ``blocks`` and of the ``estimates`` (names in
    :data:`~infoopt.hessian.options.ESTIMATES`), in the table's columns and types."""
    unknown = sorted(set(estimates) - set(ESTIMATORS))
    if unknown:
        raise ValueError(f"unknown estimate(s) {', '.join(unknown)}; valid: {', '.join(ESTIMATES)}")
    parts = [block_rows(operator, blocks, options, progress)]
    parts += [ESTIMATORS[name](operator, options, progress) for name in estimates]
    return typed(pd.concat(parts, ignore_index=True), options.columns())


def missing_parts(
    space: ParameterSpace,
    options: HessianOptions,
    blocks: Sequence[int],
    estimates: Sequence[str],
) -> pd.DataFrame:
    """:func:`hessian_parts` of a checkpoint that has no weights (a diverged run): every
    number missing."""
    rows = pd.DataFrame(
        {
            PART: BLOCK,
            "block": [space.names[b] for b in blocks],
            "numel": [space.numels[b] for b in blocks],
        }
    )
    parts = [rows, *(_estimate_rows(space, name) for name in estimates)]
    return typed(pd.concat(parts, ignore_index=True), options.columns())


def checkpoint_hessian_table(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    options: HessianOptions | None = None,
    *,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """The Hessian table (:mod:`infoopt.hessian.table`) of the mean cross-entropy of ``model``
    (eval mode) on ``(x, y)``: every block's rows and every estimate, from one operator."""
    options = options or HessianOptions()
    operator = hessian_operator(model, x, y, options, device=device, progress=progress)
    blocks = range(len(operator.space))
    return hessian_table(hessian_parts(operator, options, blocks, ESTIMATES, progress))


def missing_hessian_table(
    space: ParameterSpace, options: HessianOptions | None = None
) -> pd.DataFrame:
    """The table of a checkpoint that has no weights (a diverged run): every metric missing."""
    options = options or HessianOptions()
    return hessian_table(missing_parts(space, options, range(len(space)), ESTIMATES))
