"""Voxel-wise dose errors (Gy): mean absolute error and mean (signed) error inside a mask, and
split by distance to the targets (inside them, their dose fall-off, the low-dose rest)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from vmat_monai.geometry import expand_mask

__all__ = [
    "FALLOFF_MM",
    "TARGET_REGIONS",
    "errors_by_target_distance",
    "mean_absolute_error",
    "mean_error",
    "structure_errors",
    "target_distance_regions",
]

TARGET_REGIONS = ("targets", "falloff", "far")
FALLOFF_MM = 20.0  # the fall-off region: body voxels within this distance outside the targets, mm


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


def target_distance_regions(
    targets: np.ndarray, body: np.ndarray, spacing_mm: Sequence[float], margin_mm: float = FALLOFF_MM
) -> dict[str, np.ndarray]:
    """Body voxels by distance to the union of the targets (Euclidean, in mm on the voxel grid).

    ``targets``: inside a target; ``falloff``: outside every target but within ``margin_mm`` of one
    (where the dose falls from the prescription); ``far``: the rest of the body. Without target
    voxels the first two are empty.
    """
    t, b = np.asarray(targets) > 0, np.asarray(body) > 0
    if t.shape != b.shape or len(spacing_mm) != t.ndim:
        raise ValueError(f"targets {t.shape}, body {b.shape} and spacing {tuple(spacing_mm)} do not match")
    near = expand_mask(t, spacing_mm, margin_mm)
    return {"targets": t & b, "falloff": near & ~t & b, "far": b & ~near}


def errors_by_target_distance(
    pred: np.ndarray,
    ref: np.ndarray,
    targets: np.ndarray,
    body: np.ndarray,
    spacing_mm: Sequence[float],
    margin_mm: float = FALLOFF_MM,
) -> dict[str, float]:
    """``MAE_<region>``, ``ME_<region>`` (Gy) and ``share_<region>`` (fraction of the body's voxels)
    for the regions of :func:`target_distance_regions`; NaN errors for an empty region."""
    regions = target_distance_regions(targets, body, spacing_mm, margin_mm)
    n_body = max(int(sum(m.sum() for m in regions.values())), 1)
    out: dict[str, float] = {}
    for name in TARGET_REGIONS:
        m = regions[name]
        out[f"MAE_{name}"] = mean_absolute_error(pred, ref, m)
        out[f"ME_{name}"] = mean_error(pred, ref, m)
        out[f"share_{name}"] = float(m.sum()) / n_body
    return out
