"""Gamma index (Low et al. 1998) of an evaluated dose against a reference dose on regular grids.

Two implementations with the same definition and the same parameters:

- :func:`gamma_pymedphys` calls ``pymedphys.gamma`` (the reference).
- :func:`gamma` is a numba kernel that follows pymedphys' search exactly: for each reference
  voxel above the low-dose cutoff it tests the evaluated dose (trilinear interpolation, points
  outside the grid ignored) on spherical shells of growing radius, with the same shell points,
  the same radius steps (``dta / interp_fraction``, the DTA itself always tested) and the same
  stopping rule (a shell at distance r cannot lower gamma below r / dta). It runs the reference
  voxels in parallel without building the shell × voxel point cloud, which is what makes it
  fast. Agreement with pymedphys is tested; the speed ratio is in docs/BENCHMARKS.md.

Conventions (as pymedphys): global gamma normalises the dose difference by the maximum of the
reference dose unless ``global_normalisation`` (Gy) is given; local gamma by the reference dose
of the voxel. Voxels below ``lower_percent_dose_cutoff`` % of the normalisation, and voxels
whose search found no evaluated point, are NaN; gamma above ``max_gamma`` is set to
``max_gamma``. The pass rate is the fraction of non-NaN voxels with gamma <= 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["GammaOptions", "gamma", "gamma_pymedphys", "pass_rate", "shell_points"]


@dataclass(frozen=True)
class GammaOptions:
    """Gamma settings (defaults: global 3 %/3 mm, 10 % cutoff, search to gamma 2)."""

    dose_percent: float = 3.0
    distance_mm: float = 3.0
    lower_percent_dose_cutoff: float = 10.0
    interp_fraction: int = 10
    max_gamma: float = 2.0
    local_gamma: bool = False
    global_normalisation: float | None = None
    random_subset: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.dose_percent <= 0 or self.distance_mm <= 0:
            raise ValueError("gamma dose and distance criteria must be positive")
        if self.interp_fraction < 1:
            raise ValueError("interp_fraction must be at least 1")
        if not self.max_gamma > 0:
            raise ValueError("max_gamma must be positive (use np.inf for an unbounded search)")


def shell_points(distance: float, step: float) -> np.ndarray:
    """Points (n, 3) on a sphere of radius ``distance`` with no gap larger than ``step`` (pymedphys' layout)."""
    n_rows = int(np.ceil(np.pi * distance / step)) + 1
    elevation = np.linspace(0, np.pi, n_rows)
    n_in_row = np.ceil(2 * np.pi * distance * np.sin(elevation) / step).astype(int) + 1
    rows = []
    for phi, n in zip(elevation, n_in_row, strict=True):
        az = np.linspace(0, 2 * np.pi, n + 1)[:-1]
        rows.append(
            np.stack(
                [
                    distance * np.sin(phi) * np.cos(az),
                    distance * np.sin(phi) * np.sin(az),
                    distance * np.cos(phi) + 0 * az,
                ],
                axis=1,
            )
        )
    return np.concatenate(rows, axis=0)


def _search_schedule(opts: GammaOptions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distances searched (mm), and the shell points of each as one array with start offsets."""
    dta = opts.distance_mm
    base = dta / opts.interp_fraction
    max_dist = dta * opts.max_gamma
    if not np.isfinite(max_dist):
        raise ValueError("the fast gamma needs a finite max_gamma")
    distances = []
    forced = [dta]
    d = 0.0
    while d <= max_dist:
        distances.append(d)
        d += max(d / opts.interp_fraction / opts.max_gamma, base)
        if forced and d >= forced[0]:
            d = forced.pop(0)
    shells = [shell_points(r, base) for r in distances]
    starts = np.cumsum([0] + [len(s) for s in shells])
    return np.asarray(distances), np.concatenate(shells, axis=0), starts.astype(np.int64)


def _kernel():
    import numba

    @numba.njit(parallel=True, cache=True, fastmath=False)
    def run(
        ref, ev, ref_idx, ref_origin, ref_step, ev_origin, ev_step, distances, points, starts, dd, dta, norm, local
    ):
        n = ref_idx.shape[0]
        out = np.full(n, np.inf)
        nz, ny, nx = ev.shape
        for t in numba.prange(n):
            k, j, i = ref_idx[t, 0], ref_idx[t, 1], ref_idx[t, 2]
            r = ref[k, j, i]
            pz = ref_origin[0] + k * ref_step[0]
            py = ref_origin[1] + j * ref_step[1]
            px = ref_origin[2] + i * ref_step[2]
            scale = r if local else norm
            best = np.inf
            for s in range(distances.shape[0]):
                dist = distances[s]
                min_diff = np.inf
                for q in range(starts[s], starts[s + 1]):
                    fz = (pz + points[q, 0] - ev_origin[0]) / ev_step[0]
                    fy = (py + points[q, 1] - ev_origin[1]) / ev_step[1]
                    fx = (px + points[q, 2] - ev_origin[2]) / ev_step[2]
                    if fz < 0 or fy < 0 or fx < 0 or fz > nz - 1 or fy > ny - 1 or fx > nx - 1:
                        continue
                    z0 = min(int(fz), nz - 2) if nz > 1 else 0
                    y0 = min(int(fy), ny - 2) if ny > 1 else 0
                    x0 = min(int(fx), nx - 2) if nx > 1 else 0
                    wz, wy, wx = fz - z0, fy - y0, fx - x0
                    z1, y1, x1 = min(z0 + 1, nz - 1), min(y0 + 1, ny - 1), min(x0 + 1, nx - 1)
                    c00 = ev[z0, y0, x0] * (1 - wx) + ev[z0, y0, x1] * wx
                    c01 = ev[z0, y1, x0] * (1 - wx) + ev[z0, y1, x1] * wx
                    c10 = ev[z1, y0, x0] * (1 - wx) + ev[z1, y0, x1] * wx
                    c11 = ev[z1, y1, x0] * (1 - wx) + ev[z1, y1, x1] * wx
                    v = (c00 * (1 - wy) + c01 * wy) * (1 - wz) + (c10 * (1 - wy) + c11 * wy) * wz
                    diff = abs(v - r) / scale
                    if diff < min_diff:
                        min_diff = diff
                g = np.sqrt((min_diff / dd) ** 2 + (dist / dta) ** 2)
                if g < best:
                    best = g
                if not best > dist / dta:
                    break
            out[t] = best
        return out

    return run


def _kernel_same_grid():
    import numba

    @numba.njit(parallel=True, cache=True, fastmath=False)
    def run(ref, ev, ref_idx, distances, cell, frac, starts, dd, dta, norm, local):
        """Reference and evaluation on one grid: each shell point is a fixed cell offset + weights."""
        n = ref_idx.shape[0]
        out = np.full(n, np.inf)
        nz, ny, nx = ev.shape
        for t in numba.prange(n):
            k, j, i = ref_idx[t, 0], ref_idx[t, 1], ref_idx[t, 2]
            r = ref[k, j, i]
            scale = r if local else norm
            best = np.inf
            for s in range(distances.shape[0]):
                min_diff = np.inf
                for q in range(starts[s], starts[s + 1]):
                    z0, y0, x0 = k + cell[q, 0], j + cell[q, 1], i + cell[q, 2]
                    wz, wy, wx = frac[q, 0], frac[q, 1], frac[q, 2]
                    if z0 < 0 or y0 < 0 or x0 < 0 or z0 > nz - 1 or y0 > ny - 1 or x0 > nx - 1:
                        continue
                    if (z0 == nz - 1 and wz > 0) or (y0 == ny - 1 and wy > 0) or (x0 == nx - 1 and wx > 0):
                        continue
                    z1 = z0 + 1 if wz > 0 else z0
                    y1 = y0 + 1 if wy > 0 else y0
                    x1 = x0 + 1 if wx > 0 else x0
                    c00 = ev[z0, y0, x0] * (1 - wx) + ev[z0, y0, x1] * wx
                    c01 = ev[z0, y1, x0] * (1 - wx) + ev[z0, y1, x1] * wx
                    c10 = ev[z1, y0, x0] * (1 - wx) + ev[z1, y0, x1] * wx
                    c11 = ev[z1, y1, x0] * (1 - wx) + ev[z1, y1, x1] * wx
                    v = (c00 * (1 - wy) + c01 * wy) * (1 - wz) + (c10 * (1 - wy) + c11 * wy) * wz
                    diff = abs(v - r) / scale
                    if diff < min_diff:
                        min_diff = diff
                g = np.sqrt((min_diff / dd) ** 2 + (distances[s] / dta) ** 2)
                if g < best:
                    best = g
                if not best > distances[s] / dta:
                    break
            out[t] = best
        return out

    return run


_RUN = None
_RUN_SAME = None


def _uniform(axis: np.ndarray, name: str) -> tuple[float, float]:
    a = np.asarray(axis, dtype=np.float64)
    if a.size > 1:
        d = np.diff(a)
        if d.min() <= 0 or d.max() - d.min() > 1e-6 * max(1.0, abs(d.mean())):
            raise ValueError(f"{name} axis must be increasing and uniformly spaced")
        return float(a[0]), float(d.mean())
    return float(a[0]), 1.0


def _points_to_calc(ref: np.ndarray, opts: GammaOptions) -> tuple[np.ndarray, float]:
    norm = float(opts.global_normalisation) if opts.global_normalisation is not None else float(np.max(ref))
    cutoff = opts.lower_percent_dose_cutoff / 100.0 * norm
    idx = np.argwhere(ref >= cutoff)
    if opts.random_subset is not None and opts.random_subset < len(idx):
        rng = np.random.default_rng(opts.seed)
        idx = idx[np.sort(rng.choice(len(idx), size=opts.random_subset, replace=False))]
    return idx.astype(np.int64), norm


def gamma(
    axes_reference: Sequence[np.ndarray],
    dose_reference: np.ndarray,
    axes_evaluation: Sequence[np.ndarray],
    dose_evaluation: np.ndarray,
    options: GammaOptions | None = None,
) -> np.ndarray:
    """Gamma of ``dose_evaluation`` against ``dose_reference`` (3D, Gy; axes in mm per array dimension).

    Returns an array shaped like the reference: gamma per voxel, NaN where not computed.
    """
    global _RUN, _RUN_SAME
    opts = options or GammaOptions()
    ref = np.ascontiguousarray(dose_reference, dtype=np.float64)
    ev = np.ascontiguousarray(dose_evaluation, dtype=np.float64)
    if ref.ndim != 3 or ev.ndim != 3:
        raise ValueError("the fast gamma takes 3D doses")
    if not (np.all(np.isfinite(ref)) and np.all(np.isfinite(ev))):
        raise ValueError("dose contains NaN/inf")
    axr = [_uniform(a, "reference") for a in axes_reference]
    axe = [_uniform(a, "evaluation") for a in axes_evaluation]
    for ax, arr in ((axes_reference, ref), (axes_evaluation, ev)):
        if tuple(len(a) for a in ax) != arr.shape:
            raise ValueError(f"axes lengths {[len(a) for a in ax]} do not match the dose shape {arr.shape}")
    idx, norm = _points_to_calc(ref, opts)
    distances, points, starts = _search_schedule(opts)
    # interleave the voxels so parallel chunks get a similar mix of easy and hard voxels
    order = np.argsort(np.arange(len(idx)) % 97, kind="stable")
    idx_run = np.ascontiguousarray(idx[order])
    same_grid = ref.shape == ev.shape and np.allclose(axr, axe, rtol=0, atol=1e-9)
    if same_grid:
        if _RUN_SAME is None:
            _RUN_SAME = _kernel_same_grid()
        off = points / np.array([a[1] for a in axr])  # shell offsets in voxels
        off = np.where(np.abs(off - np.rint(off)) < 1e-9, np.rint(off), off)  # on a grid plane: exactly
        cell = np.floor(off).astype(np.int64)
        vals_run = _RUN_SAME(
            ref, ev, idx_run, distances, cell, off - cell, starts,
            opts.dose_percent / 100.0, float(opts.distance_mm), norm, bool(opts.local_gamma),
        )  # fmt: skip
    else:
        if _RUN is None:
            _RUN = _kernel()
        vals_run = _RUN(
            ref,
            ev,
            idx_run,
            np.array([a[0] for a in axr]),
            np.array([a[1] for a in axr]),
            np.array([a[0] for a in axe]),
            np.array([a[1] for a in axe]),
            distances,
            points,
            starts,
            opts.dose_percent / 100.0,
            float(opts.distance_mm),
            norm,
            bool(opts.local_gamma),
        )
    vals = np.empty_like(vals_run)
    vals[order] = vals_run
    out = np.full(ref.shape, np.nan)
    vals[np.isinf(vals)] = np.nan
    vals = np.minimum(vals, opts.max_gamma)
    out[tuple(idx.T)] = vals
    return out


def gamma_pymedphys(
    axes_reference: Sequence[np.ndarray],
    dose_reference: np.ndarray,
    axes_evaluation: Sequence[np.ndarray],
    dose_evaluation: np.ndarray,
    options: GammaOptions | None = None,
) -> np.ndarray:
    """The same gamma computed by ``pymedphys.gamma`` (reference implementation; slow)."""
    import pymedphys

    opts = options or GammaOptions()
    if opts.random_subset is not None:
        raise ValueError("use gamma() for a random subset: pymedphys draws its subset from the global NumPy state")
    return pymedphys.gamma(
        tuple(np.asarray(a, dtype=np.float64) for a in axes_reference),
        np.asarray(dose_reference, dtype=np.float64),
        tuple(np.asarray(a, dtype=np.float64) for a in axes_evaluation),
        np.asarray(dose_evaluation, dtype=np.float64),
        opts.dose_percent,
        opts.distance_mm,
        lower_percent_dose_cutoff=opts.lower_percent_dose_cutoff,
        interp_fraction=opts.interp_fraction,
        max_gamma=opts.max_gamma,
        local_gamma=opts.local_gamma,
        global_normalisation=opts.global_normalisation,
    )


def pass_rate(gamma_map: np.ndarray) -> float:
    """Percentage of computed voxels (non-NaN) with gamma <= 1 (NaN if none was computed)."""
    g = np.asarray(gamma_map)
    valid = ~np.isnan(g)
    return float(100.0 * np.mean(g[valid] <= 1.0)) if valid.any() else float("nan")
