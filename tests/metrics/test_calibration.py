"""Calibration of a per-voxel uncertainty, with known answers from the normal distribution."""

from __future__ import annotations

import numpy as np
import pytest

from vmat_monai.metrics.calibration import (
    NORMAL_WITHIN,
    calibration,
    normal_within_pct,
    sigma_error_rank_correlation,
    within_k_sigma_pct,
)


def test_normal_errors_with_their_true_sigma_are_calibrated():
    rng = np.random.default_rng(0)
    plan = rng.uniform(0, 70, size=(60, 60, 60))
    sigma = rng.uniform(0.5, 3.0, size=plan.shape)
    pred = plan + rng.normal(0.0, 1.0, size=plan.shape) * sigma
    mask = np.ones(plan.shape, bool)
    c = calibration(pred, plan, sigma, mask)
    assert c["within_1sd_pct"] == pytest.approx(NORMAL_WITHIN[1], abs=0.5)
    assert c["within_2sd_pct"] == pytest.approx(NORMAL_WITHIN[2], abs=0.3)
    assert c["mean_sd_gy"] == pytest.approx(1.75, abs=0.01)
    # half the true sigma: overconfident, far fewer errors inside
    tight = calibration(pred, plan, sigma / 2, mask)
    assert tight["within_1sd_pct"] == pytest.approx(38.3, abs=0.5) and tight["within_2sd_pct"] < 70
    # only the mask counts
    half = np.zeros(plan.shape, bool)
    half[:30] = True
    assert calibration(pred, plan, sigma, half)["MAE_gy"] == pytest.approx(np.abs(pred - plan)[:30].mean())


def test_bad_inputs_and_rank_correlation():
    z = np.zeros((4, 4, 4))
    with pytest.raises(ValueError, match="mask is empty"):
        calibration(z, z, z, z)
    with pytest.raises(ValueError, match="non-negative"):
        calibration(z, z, z - 1, z + 1)
    with pytest.raises(ValueError, match="shapes differ"):
        calibration(z, z[:2], z, z)
    assert sigma_error_rank_correlation([0.1, 0.3, 0.2, 0.5], [1.0, 3.0, 2.0, 4.0]) == pytest.approx(1.0)
    assert sigma_error_rank_correlation([0.1, 0.3, 0.2], [3.0, 1.0, 2.0]) == pytest.approx(-1.0)
    assert np.isnan(sigma_error_rank_correlation([0.1, 0.2], [1.0, 2.0]))


def test_reliability_curve_of_normal_errors_follows_the_normal_curve():
    """Errors drawn from N(0, sigma^2) with that sigma predicted: the % within k sigma is the
    normal curve (68.27 % at 1, 95.45 % at 2); a sigma twice too large sits above it."""
    assert normal_within_pct([0.0, 1.0, 2.0]) == pytest.approx([0.0, NORMAL_WITHIN[1], NORMAL_WITHIN[2]], abs=0.01)
    rng = np.random.default_rng(0)
    plan = np.full((60, 60, 60), 50.0)
    sigma = np.full(plan.shape, 1.5)
    pred = plan + rng.normal(0.0, 1.5, plan.shape)
    k = np.array([0.5, 1.0, 2.0, 3.0])
    got = within_k_sigma_pct(pred, plan, sigma, np.ones(plan.shape), k)
    assert got == pytest.approx(normal_within_pct(k), abs=0.5)
    assert np.all(within_k_sigma_pct(pred, plan, 2 * sigma, np.ones(plan.shape), k) > got)
    with pytest.raises(ValueError, match="empty"):
        within_k_sigma_pct(pred, plan, sigma, np.zeros(plan.shape), k)
