"""Dose-volume histograms and their statistics (D_x, V_x) with physical volumes.

All functions take the dose in Gy of the voxels of one structure and their volumes:
``weights`` is a binary mask or a partial-volume occupancy (0…1) with the same shape as the
dose, and ``voxel_cc`` the volume of one voxel in cm³.

Definitions (each voxel is a small volume of uniform dose; volumes are interpolated between
voxel midpoints, so a uniform dose gives that dose for every D_x and a linear ramp sampled at
voxel centres gives the continuous answer exactly):

- ``D_x%``: the minimum dose received by the hottest x % of the volume.
- ``D_ycc``: the minimum dose received by the hottest y cm³ (``Dmax`` is reported as D0.03cc
  and D0.1cc; the voxel maximum is ``Dmax_voxel``).
- ``V_d``: the volume receiving at least d Gy, in % of the structure and in cm³.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

__all__ = [
    "DVH",
    "cumulative_dvh",
    "dose_at_volume_cc",
    "dose_at_volume_percent",
    "dvh_statistics",
    "volume_at_dose",
]

DEFAULT_STATS = ("D98", "D95", "D50", "D2", "Dmean", "D0.03cc", "D0.1cc")


@dataclass(frozen=True)
class _Sorted:
    dose: np.ndarray  # ascending, Gy
    vol: np.ndarray  # cc per entry
    total_cc: float


def _sorted(dose: np.ndarray, weights: np.ndarray, voxel_cc: float) -> _Sorted:
    d = np.asarray(dose, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if d.shape != w.shape:
        raise ValueError(f"dose shape {d.shape} and mask shape {w.shape} differ")
    sel = w > 0
    d, w = d[sel], w[sel] * float(voxel_cc)
    if d.size and not np.all(np.isfinite(d)):
        raise ValueError("dose contains NaN/inf inside the structure")
    order = np.argsort(d, kind="stable")
    return _Sorted(d[order], w[order], float(w.sum()))


def _quantile_from_top(s: _Sorted, volume_cc: float) -> float:
    """Dose such that ``volume_cc`` of the structure receives at least it (midpoint interpolation)."""
    if s.total_cc <= 0:
        return float("nan")
    # cumulative volume at or above each sorted dose, measured at voxel midpoints
    above = s.total_cc - (np.cumsum(s.vol) - 0.5 * s.vol)  # decreasing
    return float(np.interp(volume_cc, above[::-1], s.dose[::-1]))


def dose_at_volume_percent(dose: np.ndarray, weights: np.ndarray, percent: float, voxel_cc: float = 1.0) -> float:
    """D_x%: minimum dose to the hottest ``percent`` % of the structure, Gy (NaN if empty)."""
    if not 0 <= percent <= 100:
        raise ValueError(f"percent must be within 0..100 (got {percent})")
    s = _sorted(dose, weights, voxel_cc)
    return _quantile_from_top(s, s.total_cc * percent / 100.0)


def dose_at_volume_cc(dose: np.ndarray, weights: np.ndarray, volume_cc: float, voxel_cc: float) -> float:
    """D_ycc: minimum dose to the hottest ``volume_cc`` cm³ of the structure, Gy (NaN if empty)."""
    s = _sorted(dose, weights, voxel_cc)
    return _quantile_from_top(s, min(float(volume_cc), s.total_cc))


def volume_at_dose(dose: np.ndarray, weights: np.ndarray, dose_gy: float, voxel_cc: float) -> tuple[float, float]:
    """V_d: (percent of the structure, cm³) receiving at least ``dose_gy`` Gy."""
    d = np.asarray(dose, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    total = float(w.sum()) * voxel_cc
    cc = float(w[d >= dose_gy].sum()) * voxel_cc
    return (100.0 * cc / total if total > 0 else float("nan")), cc


@dataclass(frozen=True)
class DVH:
    """A cumulative DVH: ``volume_cc[i]`` receives at least ``dose_gy[i]``."""

    dose_gy: np.ndarray
    volume_cc: np.ndarray
    total_cc: float

    @property
    def volume_percent(self) -> np.ndarray:
        """The curve in % of the structure volume."""
        return 100.0 * self.volume_cc / self.total_cc if self.total_cc > 0 else np.full_like(self.volume_cc, np.nan)


def cumulative_dvh(
    dose: np.ndarray, weights: np.ndarray, voxel_cc: float, bin_gy: float = 0.1, max_gy: float | None = None
) -> DVH:
    """Cumulative DVH on dose bins of ``bin_gy`` from 0 to ``max_gy`` (default: the dose maximum)."""
    d = np.asarray(dose, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    top = float(d[w > 0].max()) if np.any(w > 0) else 0.0
    edges = np.arange(0.0, (max_gy if max_gy is not None else top) + 2 * bin_gy, bin_gy)
    hist, _ = np.histogram(d[w > 0], bins=np.append(edges, np.inf), weights=w[w > 0] * voxel_cc)
    vol = np.cumsum(hist[::-1])[::-1]
    return DVH(edges, vol, float(w.sum()) * voxel_cc)


def _parse(stat: str) -> tuple[str, float]:
    if stat == "Dmean":
        return "mean", 0.0
    if stat == "Dmax_voxel":
        return "max", 0.0
    if stat.startswith("D") and stat.endswith("cc"):
        return "dcc", float(stat[1:-2])
    if stat.startswith("D"):
        return "dpct", float(stat[1:])
    if stat.startswith("V") and stat.endswith("cc"):
        return "vcc", float(stat[1:-2])
    if stat.startswith("V"):
        return "vpct", float(stat[1:])
    raise ValueError(f"unknown DVH statistic {stat!r} (use D95, D0.1cc, Dmean, Dmax_voxel, V70, V45cc)")


def dvh_statistics(
    dose: np.ndarray, weights: np.ndarray, voxel_cc: float, stats: Iterable[str] = DEFAULT_STATS
) -> dict[str, float]:
    """Named statistics: ``D95`` (Gy), ``D0.1cc`` (Gy), ``Dmean``, ``Dmax_voxel``, ``V70`` (%), ``V45cc`` (cc)."""
    s = _sorted(dose, weights, voxel_cc)
    out: dict[str, float] = {}
    for name in stats:
        kind, x = _parse(name)
        if s.total_cc <= 0:
            out[name] = float("nan")
        elif kind == "mean":
            out[name] = float(np.sum(s.dose * s.vol) / s.total_cc)
        elif kind == "max":
            out[name] = float(s.dose[-1])
        elif kind == "dpct":
            out[name] = _quantile_from_top(s, s.total_cc * x / 100.0)
        elif kind == "dcc":
            out[name] = _quantile_from_top(s, min(x, s.total_cc))
        elif kind == "vpct":
            out[name] = 100.0 * float(s.vol[s.dose >= x].sum()) / s.total_cc
        else:
            out[name] = float(s.vol[s.dose >= x].sum())
    return out
