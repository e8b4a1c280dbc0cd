"""Spectral entropies: closed forms, scipy's Shannon entropy as reference, PAPER.md §5."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.stats import entropy as shannon

from infoopt.entropy import (
    entropy_gap,
    matrix_entropy,
    renyi_entropy,
    spectrum_probabilities,
    symmetric_eigenvalues,
    von_neumann_entropy,
)

positive_floats = st.floats(min_value=1e-6, max_value=1e6, allow_nan=False)
nonnegative_floats = st.floats(min_value=0.0, max_value=1e6, allow_nan=False)
spectra = arrays(np.float64, st.integers(1, 40), elements=nonnegative_floats).filter(
    lambda a: a.sum() > 0
)
positive_spectra = arrays(np.float64, st.integers(1, 40), elements=positive_floats)


def test_closed_forms():
    assert von_neumann_entropy([1.0, 1.0, 2.0]) == pytest.approx(1.5 * math.log(2), abs=1e-15)
    assert entropy_gap([1.0, 1.0, 2.0]) == pytest.approx(math.log(3) - 1.5 * math.log(2))
    assert von_neumann_entropy([5.0, 0.0, 0.0]) == 0.0
    assert entropy_gap([5.0, 0.0, 0.0]) == pytest.approx(math.log(3))
    assert entropy_gap([2.5] * 7) == pytest.approx(0.0, abs=1e-15)
    assert von_neumann_entropy([2.5] * 7) == pytest.approx(math.log(7))
    assert entropy_gap([3.0]) == 0.0


def test_normalizations_treat_negative_eigenvalues_as_documented():
    eigs = [-1.0, 1.0, 2.0]
    np.testing.assert_allclose(spectrum_probabilities(eigs, "abs"), [0.25, 0.25, 0.5])
    np.testing.assert_allclose(spectrum_probabilities(eigs, "clip"), [0.0, 1 / 3, 2 / 3])
    assert entropy_gap([-1.0, 1.0]) == pytest.approx(0.0, abs=1e-15)
    assert entropy_gap([-1.0, 1.0], normalization="clip") == pytest.approx(math.log(2))
    with pytest.raises(ValueError, match="unknown normalization 'l2'; valid: abs, clip"):
        entropy_gap(eigs, normalization="l2")


def test_degenerate_spectra_are_nan():
    for function in (von_neumann_entropy, entropy_gap):
        assert math.isnan(function([0.0, 0.0, 0.0]))
        assert math.isnan(function([-1.0, -2.0], normalization="clip"))
    assert math.isnan(renyi_entropy([0.0, 0.0], alpha=2.0))
    assert np.isnan(spectrum_probabilities([0.0, 0.0])).all()
    batch = entropy_gap(np.array([[0.0, 0.0], [1.0, 3.0]]))
    assert math.isnan(batch[0]) and batch[1] == pytest.approx(math.log(2) - shannon([1, 3]))


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="spectrum"):
        entropy_gap([])
    with pytest.raises(ValueError, match="alpha must be >= 0"):
        renyi_entropy([1.0, 2.0], alpha=-1.0)
    with pytest.raises(ValueError, match="square"):
        matrix_entropy(np.ones((2, 3)))


def test_batches_and_torch_tensors_match_single_numpy_spectra():
    rng = np.random.default_rng(0)
    batch = rng.random((5, 9))
    expected = [math.log(9) - shannon(row) for row in batch]
    np.testing.assert_allclose(entropy_gap(batch), expected, rtol=1e-12)
    np.testing.assert_allclose(
        entropy_gap(torch.tensor(batch, dtype=torch.float32)), expected, rtol=1e-6
    )


def test_matrix_entropy_uses_the_symmetric_part_spectrum():
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    eigs = np.array([0.1, 0.5, 1.0, 2.0, 3.0, 7.0])
    symmetric = q @ np.diag(eigs) @ q.T
    skew = rng.standard_normal((6, 6))
    matrix = symmetric + (skew - skew.T)  # the skew part has no effect
    np.testing.assert_allclose(symmetric_eigenvalues(matrix), eigs, rtol=1e-12)
    assert matrix_entropy(matrix) == pytest.approx(shannon(eigs / eigs.sum()), rel=1e-12)
    expected = -math.log((eigs**2).sum() / eigs.sum() ** 2)
    assert matrix_entropy(torch.tensor(matrix), alpha=2.0) == pytest.approx(expected, rel=1e-12)


def test_renyi_special_orders():
    eigs = np.array([1.0, 2.0, 3.0, 0.0])
    p = eigs / eigs.sum()
    assert renyi_entropy(eigs, 0.0) == pytest.approx(math.log(3))
    assert renyi_entropy(eigs, 2.0) == pytest.approx(-math.log((p**2).sum()))
    assert renyi_entropy(eigs, math.inf) == pytest.approx(-math.log(p.max()))
    assert renyi_entropy(eigs, 1.0) == pytest.approx(shannon(p))


# PAPER.md §5 as properties.


@given(spectra)
def test_gap_is_between_zero_and_log_n(eigs):
    gap = entropy_gap(eigs)
    assert 0.0 <= gap <= math.log(len(eigs)) + 1e-12
    assert gap == pytest.approx(
        shannon(eigs / eigs.sum(), np.full(len(eigs), 1 / len(eigs))), abs=1e-9
    )


@given(positive_floats, st.integers(1, 50))
def test_gap_is_zero_for_equal_eigenvalues(value, n):
    assert entropy_gap(np.full(n, value)) == pytest.approx(0.0, abs=1e-12)


@given(positive_spectra.filter(lambda a: a.max() >= a.min() * (1 + 1e-3)))
def test_gap_is_positive_for_unequal_eigenvalues(eigs):
    assert entropy_gap(eigs) > 0.0


@given(positive_spectra)
def test_gap_is_at_most_log_condition_number(eigs):
    assert entropy_gap(eigs) <= math.log(eigs.max() / eigs.min()) + 1e-12


@given(spectra)
def test_gap_is_at_most_n_times_total_variation_from_uniform(eigs):
    n = len(eigs)
    a = eigs / eigs.sum()
    total_variation = 0.5 * np.abs(a - 1 / n).sum()
    assert entropy_gap(a) <= n * total_variation + 1e-12


@given(spectra, st.floats(min_value=1e-3, max_value=1e3))
def test_gap_is_invariant_under_positive_scaling(eigs, scale):
    assert entropy_gap(eigs * scale) == pytest.approx(entropy_gap(eigs), abs=1e-10)


@given(spectra, st.floats(min_value=0.0, max_value=10.0), st.floats(min_value=0.0, max_value=10.0))
def test_renyi_entropy_decreases_with_order(eigs, alpha, beta):
    low, high = sorted((alpha, beta))
    assert renyi_entropy(eigs, low) >= renyi_entropy(eigs, high) - 1e-9


@settings(max_examples=30)
@given(spectra.filter(lambda a: (a > 0).sum() > 1))
def test_renyi_tends_to_von_neumann_as_order_tends_to_one(eigs):
    entropy = von_neumann_entropy(eigs)
    for alpha in (1 - 1e-6, 1 + 1e-6):
        assert renyi_entropy(eigs, alpha) == pytest.approx(entropy, rel=1e-4, abs=1e-7)


@pytest.mark.parametrize(("a", "b"), [(1.0, 0.05), (3.0, 0.3), (2.0, 0.1)])
def test_gap_of_gaussian_magnitudes_is_half_the_squared_coefficient_of_variation(a, b):
    # x_i iid N(a, b²), p_i = |x_i| / Σ|x_j|: gap ≈ b² / (2 a²) for small b/a and large n.
    x = np.random.default_rng(2025).normal(a, b, size=400_000)
    assert entropy_gap(np.abs(x)) == pytest.approx(b**2 / (2 * a**2), rel=0.03)
