"""Voxel-wise dose errors (Gy): mean absolute error and mean (signed) error inside a mask."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["mean_absolute_error", "mean_error", "structure_errors"]


def _masked(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    p, r = np.asarray(pred, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    if p.shape != r.shape:
        raise ValueError(f"predicted dose {p.shape} and reference dose {r.shape} are on different grids")
    if mask is None:
        return p.ravel(), r.ravel()
    m = np.asarray(mask)
    if m.shape != p.shape:
        raise ValueError(f"mask {m.shape} and dose {p.shape} are on different grids")
    return p[m > 0], r[m > 0]


def mean_absolute_error(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean |pred - ref| over the voxels of ``mask`` (all voxels if None), Gy; NaN for an empty mask."""
    p, r = _masked(pred, ref, mask)
    return float(np.mean(np.abs(p - r))) if p.size else float("nan")


def mean_error(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean (pred - ref) over ``mask``, Gy: positive when the prediction is too hot."""
    p, r = _masked(pred, ref, mask)
    return float(np.mean(p - r)) if p.size else float("nan")


def structure_errors(pred: np.ndarray, ref: np.ndarray, masks: Mapping[str, np.ndarray]) -> dict[str, float]:
    """``{name}_MAE`` and ``{name}_ME`` (Gy) for every named mask."""
    out: dict[str, float] = {}
    for name, m in masks.items():
        out[f"{name}_MAE"] = mean_absolute_error(pred, ref, m)
        out[f"{name}_ME"] = mean_error(pred, ref, m)
    return out
