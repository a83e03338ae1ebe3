"""The OpenKBP challenge's dose score and DVH score, as the challenge defines them.

Babier et al., Med. Phys. 48(9), 2021, and the challenge's evaluation code:

- dose score of a patient: sum |reference - prediction| over the possible-dose mask divided by
  the number of voxels in that mask (Gy); the challenge's dose score is the mean over patients.
- DVH metrics: organs: D_0.1cc and mean dose; targets: D99, D95, D1. Percentiles use NumPy's
  default (linear) interpolation over the structure's voxels, and D_0.1cc is the
  ``100 - 100·n/N`` percentile where ``n = max(1, round(100 mm³ / voxel volume))`` voxels make up
  0.1 cc and N is the structure's voxel count.
- DVH score: mean absolute difference over all (patient, structure, metric) values that exist.

:func:`dvh_score_parts` splits the DVH score by kind of metric (targets' D99 / D95 / D1, organs'
D_0.1cc / mean), with the signed mean, so a score can be read as "cold target edges" or "hot organs".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

__all__ = ["DVH_KINDS", "dose_score", "dvh_metric_kind", "dvh_metrics", "dvh_score", "dvh_score_parts"]

# metric-name suffix -> kind of DVH metric, in the order of the challenge's table
DVH_KINDS = {
    "_D_99": "target D99",
    "_D_95": "target D95",
    "_D_1": "target D1",
    "_D_0.1_cc": "organ D0.1cc",
    "_mean": "organ mean",
}


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
    return float(np.mean(np.abs([e for _, e in _paired_errors(pred_metrics, ref_metrics)])))


def _paired_errors(
    pred_metrics: Sequence[Mapping[str, float]], ref_metrics: Sequence[Mapping[str, float]]
) -> list[tuple[str, float]]:
    """(metric name, pred - ref) for every metric finite in both, pooled over patients.

    Raises:
        ValueError: when no metric is present in both.
    """
    errors = [
        (k, p[k] - r[k])
        for p, r in zip(pred_metrics, ref_metrics, strict=True)
        for k in r
        if k in p and np.isfinite(p[k]) and np.isfinite(r[k])
    ]
    if not errors:
        raise ValueError("no DVH metric is present in both prediction and reference")
    return errors


def dvh_metric_kind(name: str) -> str:
    """The kind of a :func:`dvh_metrics` name (``PTV70_D_95`` -> ``target D95``)."""
    for suffix, kind in DVH_KINDS.items():
        if name.endswith(suffix):
            return kind
    raise ValueError(f"{name!r} is not an OpenKBP DVH metric (suffixes: {', '.join(DVH_KINDS)})")


def dvh_score_parts(
    pred_metrics: Sequence[Mapping[str, float]], ref_metrics: Sequence[Mapping[str, float]]
) -> dict[str, dict[str, float]]:
    """The DVH score by kind of metric: ``{kind: {"mae", "bias", "n", "share"}}``.

    ``mae``: mean |pred - ref| (Gy); ``bias``: mean (pred - ref) (Gy, positive: the prediction is
    hot); ``n``: how many (patient, structure) values; ``share``: the kind's part of the DVH score
    (the shares add up to 1, and the n-weighted ``mae`` to the score). Kinds without a value are left out.
    """
    errors: dict[str, list[float]] = {kind: [] for kind in DVH_KINDS.values()}
    for k, e in _paired_errors(pred_metrics, ref_metrics):
        errors[dvh_metric_kind(k)].append(e)
    total = sum(float(np.abs(e).sum()) for e in errors.values())
    return {
        kind: {
            "mae": float(np.mean(np.abs(e))),
            "bias": float(np.mean(e)),
            "n": len(e),
            "share": float(np.abs(e).sum() / total) if total > 0 else 0.0,
        }
        for kind, e in errors.items()
        if e
    }
