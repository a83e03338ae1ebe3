"""The OpenKBP challenge's dose score and DVH score, as the challenge defines them.

Babier et al., Med. Phys. 48(9), 2021, and the challenge's evaluation code:

- dose score of a patient: sum |reference - prediction| over the possible-dose mask divided by
  the number of voxels in that mask (Gy); the challenge's dose score is the mean over patients.
- DVH metrics: organs: D_0.1cc and mean dose; targets: D99, D95, D1. Percentiles use NumPy's
  default (linear) interpolation over the structure's voxels, and D_0.1cc is the
  ``100 - 100·n/N`` percentile where ``n = max(1, round(100 mm³ / voxel volume))`` voxels make up
  0.1 cc and N is the structure's voxel count.
- DVH score: mean absolute difference over all (patient, structure, metric) values that exist.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

__all__ = ["dose_score", "dvh_metrics", "dvh_score"]


def dose_score(pred: np.ndarray, ref: np.ndarray, possible_dose_mask: np.ndarray) -> float:
    """Mean absolute error inside the possible-dose mask, Gy."""
    m = np.asarray(possible_dose_mask) > 0
    if not m.any():
        raise ValueError("the possible-dose mask is empty")
    diff = np.abs(np.asarray(ref, dtype=np.float64) - np.asarray(pred, dtype=np.float64))
    return float(diff[m].sum() / m.sum())


def dvh_metrics(
    dose: np.ndarray,
    masks: Mapping[str, np.ndarray],
    voxel_mm: Sequence[float],
    targets: Iterable[str],
) -> dict[str, float]:
    """The challenge's DVH metrics: ``{roi}_D_0.1_cc`` / ``{roi}_mean`` for organs, ``{roi}_D_99|95|1`` for targets.

    Structures with an empty mask are left out (as the challenge does).
    """
    d = np.asarray(dose, dtype=np.float64)
    targets = set(targets)
    voxel_mm3 = float(np.prod(voxel_mm))
    out: dict[str, float] = {}
    for roi, mask in masks.items():
        m = np.asarray(mask) > 0
        if not m.any():
            continue
        roi_dose = d[m]
        if roi in targets:
            out[f"{roi}_D_99"] = float(np.percentile(roi_dose, 1))
            out[f"{roi}_D_95"] = float(np.percentile(roi_dose, 5))
            out[f"{roi}_D_1"] = float(np.percentile(roi_dose, 99))
        else:
            n_tenth_cc = max(1.0, float(np.round(100.0 / voxel_mm3)))
            pct = max(0.0, 100.0 - n_tenth_cc / roi_dose.size * 100.0)
            out[f"{roi}_D_0.1_cc"] = float(np.percentile(roi_dose, pct))
            out[f"{roi}_mean"] = float(roi_dose.mean())
    return out


def dvh_score(pred_metrics: Sequence[Mapping[str, float]], ref_metrics: Sequence[Mapping[str, float]]) -> float:
    """Mean |pred - ref| over every metric present in both, pooled over patients, Gy."""
    diffs = [
        abs(p[k] - r[k])
        for p, r in zip(pred_metrics, ref_metrics, strict=True)
        for k in r
        if k in p and np.isfinite(p[k]) and np.isfinite(r[k])
    ]
    if not diffs:
        raise ValueError("no DVH metric is present in both prediction and reference")
    return float(np.mean(diffs))
