"""Calibration of a predicted per-voxel uncertainty (ensembles, diffusion samples).

A predictive standard deviation sigma is calibrated when the error ``pred - plan`` lies within
``k`` sigma as often as a normal distribution says: 68.3 % for k = 1, 95.4 % for k = 2. Per
case: those two fractions over a mask (the body), and the mean sigma. Across cases: whether a
case with larger mean sigma has larger error (Spearman rank correlation of mean sigma and MAE).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["NORMAL_WITHIN", "calibration", "normal_within_pct", "sigma_error_rank_correlation", "within_k_sigma_pct"]

NORMAL_WITHIN = {1: 68.27, 2: 95.45}  # % of a normal distribution within 1 and 2 sd


def _errors_and_sigmas(
    pred: np.ndarray, plan: np.ndarray, sigma: np.ndarray, mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """|pred - plan| and sigma on the ``mask`` voxels (float64), after checking shapes, mask and sigma."""
    pred, plan, sigma, mask = (np.asarray(a) for a in (pred, plan, sigma, mask))
    if not (pred.shape == plan.shape == sigma.shape == mask.shape):
        raise ValueError(f"shapes differ: pred {pred.shape}, plan {plan.shape}, sigma {sigma.shape}, mask {mask.shape}")
    m = mask > 0
    if not m.any():
        raise ValueError("the mask is empty: no voxel to assess calibration on")
    s = sigma[m].astype(np.float64)
    if not np.all(np.isfinite(s)) or s.min() < 0:
        raise ValueError("sigma must be finite and non-negative")
    return np.abs(pred[m].astype(np.float64) - plan[m]), s


def calibration(pred: np.ndarray, plan: np.ndarray, sigma: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Per-case calibration over ``mask``: ``within_1sd_pct``, ``within_2sd_pct`` (% of voxels whose
    |pred - plan| <= k sigma), ``mean_sd_gy`` and ``MAE_gy`` (Gy). Arrays in Gy, one shape.

    Raises:
        ValueError: for mismatched shapes, an empty mask or a negative / non-finite sigma.
    """
    err, s = _errors_and_sigmas(pred, plan, sigma, mask)
    return {
        "within_1sd_pct": 100.0 * float(np.mean(err <= s)),
        "within_2sd_pct": 100.0 * float(np.mean(err <= 2 * s)),
        "mean_sd_gy": float(s.mean()),
        "MAE_gy": float(err.mean()),
    }


def normal_within_pct(k: Sequence[float] | np.ndarray) -> np.ndarray:
    """% of a normal distribution within ``k`` standard deviations of its mean (the calibrated curve)."""
    from scipy.special import erf

    return 100.0 * erf(np.asarray(k, dtype=np.float64) / np.sqrt(2.0))


def within_k_sigma_pct(
    pred: np.ndarray, plan: np.ndarray, sigma: np.ndarray, mask: np.ndarray, k: Sequence[float] | np.ndarray
) -> np.ndarray:
    """% of ``mask`` voxels whose |pred - plan| <= k sigma, for each ``k`` (the reliability curve;
    :func:`normal_within_pct` is the calibrated one). Arrays in Gy, one shape."""
    err, s = _errors_and_sigmas(pred, plan, sigma, mask)
    return np.array([100.0 * float(np.mean(err <= kk * s)) for kk in np.asarray(k, dtype=np.float64)])


def sigma_error_rank_correlation(mean_sd: Sequence[float], mae: Sequence[float]) -> float:
    """Spearman rank correlation of the cases' mean sigma and their MAE (NaN for fewer than 3 cases)."""
    from scipy.stats import spearmanr

    a, b = np.asarray(mean_sd, dtype=np.float64), np.asarray(mae, dtype=np.float64)
    if a.size != b.size:
        raise ValueError(f"{a.size} sigmas but {b.size} errors")
    if a.size < 3:
        return float("nan")
    return float(spearmanr(a, b).statistic)
