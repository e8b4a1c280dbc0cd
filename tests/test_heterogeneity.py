"""Block and gradient heterogeneity (infoopt.hessian.heterogeneity), against dense block
Hessians and dense gradients of tiny models in float64 (tests/test_hessian.py's references), and
a Jensen-Shannon distance integrated by the trapezoidal rule on a much finer grid."""

from __future__ import annotations

import copy
import itertools
import math
import statistics

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from scipy.spatial.distance import jensenshannon
from scipy.stats import norm
from torch.func import functional_call

from infoopt.hessian.aggregate import aggregate_blocks
from infoopt.hessian.heterogeneity import (
    bandwidth,
    block_heterogeneity,
    gradient_heterogeneity,
    jensen_shannon_distances,
    spectral_densities,
)
from infoopt.hessian.metrics import checkpoint_hessian_table, hessian_operator, hessian_parts
from infoopt.hessian.options import ESTIMATES, HessianOptions
from infoopt.hessian.space import ParameterSpace
from infoopt.hessian.table import GLOBAL, hessian_table
from test_hessian import dense_hessian, diagonal_block, make_data, make_model

pytestmark = pytest.mark.usefixtures("one_thread")


def silverman(spectra: list[np.ndarray]) -> float:
    """The bandwidth rule, with the statistics module: 0.9·min(s, IQR/1.34)·N^(−1/5), at
    least 1/512 of the span."""
    pooled = sorted(float(v) for s in spectra for v in s)
    q1, _, q3 = statistics.quantiles(pooled, n=4, method="inclusive")
    spread = min(statistics.stdev(pooled), (q3 - q1) / 1.34)
    return max(0.9 * spread * len(pooled) ** -0.2, (pooled[-1] - pooled[0]) / 512)


def js_distance_by_quadrature(a: np.ndarray, b: np.ndarray, h: float) -> float:
    """√JS (base 2) of the Gaussian-kernel densities of ``a`` and ``b`` (scipy's normal pdf),
    integrated by the trapezoidal rule at h/50 over their support ± 10 h."""
    low = min(a.min(), b.min()) - 10 * h
    high = max(a.max(), b.max()) + 10 * h
    x = np.linspace(low, high, int((high - low) / (h / 50)) + 2)
    p = norm.pdf(x[:, None], a[None, :], h).mean(axis=1)
    q = norm.pdf(x[:, None], b[None, :], h).mean(axis=1)
    m = (p + q) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log2(p / m), 0.0) + np.where(q > 0, q * np.log2(q / m), 0.0)
    return math.sqrt(max(np.trapezoid(terms, x) / 2, 0.0))


def reference_block_heterogeneity(spectra: list[np.ndarray]) -> float:
    h = silverman(spectra)
    return statistics.fmean(
        js_distance_by_quadrature(a, b, h) for a, b in itertools.combinations(spectra, 2)
    )


def dense_gradient_norms(model, x, y) -> list[float]:
    """‖∂L/∂θ_b‖ of the float64 model in eval mode on all of the data at once."""
    model = copy.deepcopy(model).double().eval()
    params = {n: p.detach().requires_grad_() for n, p in model.named_parameters()}
    loss = F.cross_entropy(functional_call(model, params, (x.double(),)), y)
    grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
    return [0.0 if g is None else float(g.norm()) for g in grads]


# --- pure functions -------------------------------------------------------------------------


def test_identical_spectra_are_homogeneous_and_the_measure_is_scale_free():
    rng = np.random.default_rng(0)
    spectrum = rng.gamma(2.0, size=20)
    assert block_heterogeneity([spectrum, spectrum.copy(), spectrum[::-1]]) == pytest.approx(
        0.0, abs=1e-12
    )
    spectra = [rng.gamma(2.0, size=15), rng.normal(5.0, 0.1, size=9), rng.normal(size=30)]
    value = block_heterogeneity(spectra)
    assert 0 < value < 1
    assert block_heterogeneity([1e-4 * s for s in spectra]) == pytest.approx(value, rel=1e-9)
    assert block_heterogeneity([s + 7.0 for s in spectra]) == pytest.approx(value, rel=1e-9)


def test_distances_are_scipys_jensen_shannon():
    rng = np.random.default_rng(2)
    p, others = rng.dirichlet(np.ones(50)), rng.dirichlet(np.ones(50), size=4)
    expected = [jensenshannon(p, q, base=2) for q in others]
    np.testing.assert_allclose(jensen_shannon_distances(p, others), expected, rtol=1e-12)


def test_disjoint_spectra_are_at_the_largest_distance():
    """Most eigenvalues at 0 (as in a Hessian's blocks): the IQR, so the bandwidth, is the
    floor, span/512, and the three densities do not overlap."""
    spectra = [np.zeros(20), np.full(2, 1000.0), np.full(2, 2000.0)]
    assert bandwidth(spectra) == pytest.approx(2000 / 512)
    assert block_heterogeneity(spectra) == pytest.approx(1.0, abs=1e-9)


def test_degenerate_inputs():
    assert math.isnan(block_heterogeneity([np.array([1.0, 2.0])]))
    assert block_heterogeneity([np.zeros(3), np.zeros(5)]) == 0.0
    assert bandwidth([np.zeros(3), np.zeros(5)]) == 0.0


def test_densities_sum_to_one_on_a_grid_that_resolves_the_bandwidth():
    spectra = [np.array([0.0, 0.0, 0.0, 100.0]), np.array([50.0])]
    grid, densities = spectral_densities(spectra)
    h = bandwidth(spectra)
    assert h == pytest.approx(silverman(spectra))
    np.testing.assert_allclose(densities.sum(axis=1), 1.0)
    assert grid[1] - grid[0] < h / 3 and grid[0] < -3 * h and grid[-1] > 100 + 3 * h


def test_gradient_heterogeneity_is_the_spread_of_log_norms():
    assert gradient_heterogeneity([2.0, 2.0, 2.0]) == 0.0
    # ln norms 1 and 3: population std 1; a zero norm (an unused block) is left out.
    assert gradient_heterogeneity([math.e, math.e**3, 0.0]) == pytest.approx(1.0)
    norms = [0.3, 4.0, 0.02, 1.5]
    expected = statistics.pstdev(math.log(n) for n in norms)
    assert gradient_heterogeneity(norms) == pytest.approx(expected)
    assert gradient_heterogeneity([1e3 * n for n in norms]) == pytest.approx(expected)
    assert math.isnan(gradient_heterogeneity([1.0, 0.0, math.nan]))


def test_tables_without_the_new_columns_aggregate_to_nan():
    blocks = pd.DataFrame({"trace": [1.0, 2.0], "gap": [0.1, 0.2], "positive": [True, True]})
    summary = aggregate_blocks(blocks)
    assert math.isnan(summary["block_heterogeneity"])
    assert math.isnan(summary["gradient_heterogeneity"])


# --- against dense references ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["cnn", "vit"])
def test_table_heterogeneities_equal_dense_references(name):
    """With K above every block's size the sub-Hessians are the whole diagonal blocks: the
    table's block heterogeneity is that of the dense blocks' spectra, its gradient
    heterogeneity that of the dense gradient's block norms, also when sharded."""
    model, (x, y) = make_model(name), make_data()
    space = ParameterSpace.of(model)
    assert max(space.numels) <= 128
    hessian = dense_hessian(model, x, y)
    spectra = [
        np.linalg.eigvalsh(diagonal_block(hessian, space, b).numpy()) for b in range(len(space))
    ]
    options = HessianOptions(max_k=128, probes=0, lanczos_max_iter=0, dtype="float64", seed=1)
    table = checkpoint_hessian_table(model, x, y, options)
    blocks, summary = table[table["block"] != GLOBAL], table[table["block"] == GLOBAL].iloc[0]
    for eigenvalues, expected in zip(blocks["eigenvalues"], spectra, strict=True):
        np.testing.assert_allclose(eigenvalues, expected, rtol=1e-8, atol=1e-12)
    assert summary["block_heterogeneity"] == pytest.approx(
        reference_block_heterogeneity(spectra), rel=1e-3
    )
    norms = dense_gradient_norms(model, x, y)
    np.testing.assert_allclose(blocks["grad_norm"], norms, rtol=1e-9, atol=1e-14)
    positive = [math.log(n) for n in norms if n > 0]
    assert summary["gradient_heterogeneity"] == pytest.approx(statistics.pstdev(positive))
    # Three jobs, each with its own operator, a third of the blocks and (the first) the estimates.
    parts = [
        hessian_parts(
            hessian_operator(model, x, y, options),
            options,
            range(len(space))[i::3],
            ESTIMATES if i == 0 else (),
        )
        for i in range(3)
    ]
    merged = hessian_table(pd.concat(parts, ignore_index=True))
    merged_summary = merged[merged["block"] == GLOBAL].iloc[0]
    for column in ("block_heterogeneity", "gradient_heterogeneity"):
        assert merged_summary[column] == pytest.approx(summary[column], rel=1e-12)
