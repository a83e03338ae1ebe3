"""Plausibility of a converted plan: warnings (never failures) for what a physicist would question.

Each check and its threshold (:class:`PlausibilityLimits`, documented in docs/CONVERSION.md):

- **target coverage**: a target's D95 below ``min_target_d95`` (90 %) of its prescribed level;
- **hot spot**: the hottest ``hotspot_cc`` (0.03 cm³, at least one voxel) above ``max_hotspot``
  (115 %) of the highest level;
- **dose outside the body**: more than ``outside_cc`` (1 cm³) beyond ``outside_margin_mm`` (5 mm;
  resampling smears the skin dose) of the body receiving more than ``outside_dose`` (10 %) of the
  highest level;
- **outside the scan or the dose grid**: a target touching the first or last CT slice (it may go on
  beyond the scan); a target with more than ``outside_grid_fraction`` (1 %) of its voxels outside
  the dose grid (their dose reads 0), or an organ with as much whose dose where the grid cuts it
  is still above ``outside_dose`` (an organ leaving the grid where it gets no dose is normal);
- **size**: a structure's volume outside the broad range its kind has
  (``StructureSet.typical_volume_cc``): catches a structure drawn on a few slices, another
  structure under the name, or a unit error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from vmat_monai.geometry import Grid
from vmat_monai.metrics.dvh import dvh_statistics
from vmat_monai.structures import StructureSet

__all__ = ["PlausibilityLimits", "plausibility_warnings"]


@dataclass(frozen=True)
class PlausibilityLimits:
    """Thresholds of the plausibility warnings (fractions of a prescribed level unless named otherwise)."""

    min_target_d95: float = 0.90
    max_hotspot: float = 1.15
    hotspot_cc: float = 0.03
    outside_dose: float = 0.10
    outside_cc: float = 1.0
    outside_margin_mm: float = 5.0
    outside_grid_fraction: float = 0.01


def _covered(grid_box_mm: Sequence[Sequence[float]], axes_zyx: Sequence[np.ndarray]) -> np.ndarray:
    """Voxels [z, y, x] whose centres lie in the dose grid's box (x, y, z ranges, mm; 0.01 mm slack)."""
    inside = [
        (a >= grid_box_mm[i][0] - 0.01) & (a <= grid_box_mm[i][1] + 0.01)
        for i, a in zip((2, 1, 0), axes_zyx, strict=True)
    ]
    return inside[0][:, None, None] & inside[1][None, :, None] & inside[2][None, None, :]


def plausibility_warnings(
    dose: np.ndarray | None,
    masks: np.ndarray,
    body: np.ndarray,
    structures: StructureSet,
    found: Mapping[str, str],
    prescription: Mapping[str, float],
    grid: Grid,
    grid_box_mm: Sequence[Sequence[float]] | None = None,
    limits: PlausibilityLimits = PlausibilityLimits(),
) -> list[str]:
    """The plausibility warnings of one plan (see the module docstring).

    Args:
        dose: dose on the CT grid, Gy ([z, y, x] like the masks); None: only the geometric checks.
        masks: [channel, z, y, x] boolean masks in ``structures`` channel order.
        body: [z, y, x] boolean external contour.
        structures: the structure set (targets, levels, typical volumes).
        found: canonical names of the structures present.
        prescription: target -> prescribed level, Gy.
        grid: the CT grid the arrays lie on.
        grid_box_mm: the dose grid's box (x, y, z: [low, high], mm); None skips that check.
        limits: thresholds.
    """
    out: list[str] = []
    body = np.asarray(body, dtype=bool)
    spacing_mm = tuple(abs(float(v)) for v in grid.spacing[::-1])  # z, y, x
    voxel_cc = float(np.prod(spacing_mm)) / 1000.0
    present = [s for s in structures.channels if s in found and masks[structures.index(s)].any()]
    top = max(prescription.get(t, lvl) for t, lvl in structures.targets.items())
    for s in present:
        m = masks[structures.index(s)]
        cc = float(m.sum()) * voxel_cc
        lo_hi = structures.typical_volume_cc.get(s)
        if lo_hi and not lo_hi[0] <= cc <= lo_hi[1]:
            out.append(
                f"{s} volume {cc:.1f} cm³ is far outside the usual {lo_hi[0]:g}-{lo_hi[1]:g} cm³: check its contour "
                "(a few slices only? another structure under this name?)"
            )
        if s in structures.targets and (m[0].any() or m[-1].any()):
            out.append(
                f"{s} touches the first or last CT slice: it may go on beyond the scan (its DVH is then partial)"
            )
    if dose is None:
        return out
    if grid_box_mm is not None:
        covered = _covered(grid_box_mm, (grid.zs, grid.ys, grid.xs))
        for s in present:
            m = masks[structures.index(s)]
            outside = m & ~covered
            frac = float(outside.sum()) / float(m.sum())
            if frac <= limits.outside_grid_fraction:
                continue
            # an organ may leave the grid where it gets no dose; it matters where the grid cuts it at a dose
            edge = m & covered & ndimage.binary_dilation(outside)
            at_edge = float(dose[edge].max()) if edge.any() else 0.0
            if s in structures.targets or at_edge > limits.outside_dose * top:
                out.append(
                    f"{100 * frac:.1f} % of {s} lies outside the dose grid (its dose reads 0 there; "
                    f"{at_edge:.1f} Gy where the grid ends)"
                )
    for t in structures.targets:
        if t not in present:
            continue
        level = float(prescription.get(t, structures.targets[t]))
        d95 = float(dvh_statistics(dose, masks[structures.index(t)], 1.0, ("D95",))["D95"])
        if d95 < limits.min_target_d95 * level:
            out.append(
                f"{t} D95 {d95:.2f} Gy is {100 * d95 / level:.1f} % of its {level:g} Gy level "
                f"(< {100 * limits.min_target_d95:g} %): check the prescription, the plan's normalisation or "
                "the target's name"
            )
    region = body if body.any() else np.ones_like(body)
    n_hot = max(1, round(limits.hotspot_cc / voxel_cc))
    vals = dose[region]
    if vals.size:
        hot = float(np.partition(vals, vals.size - min(n_hot, vals.size))[vals.size - min(n_hot, vals.size)])
        if hot > limits.max_hotspot * top:
            out.append(
                f"hot spot: the hottest {n_hot * voxel_cc:.2f} cm³ receive at least {hot:.1f} Gy, "
                f"{100 * hot / top:.1f} % of {top:g} Gy (> {100 * limits.max_hotspot:g} %)"
            )
    if body.any():
        far = ndimage.distance_transform_edt(~body, sampling=spacing_mm) > limits.outside_margin_mm
        cc = float((far & (dose > limits.outside_dose * top)).sum()) * voxel_cc
        if cc > limits.outside_cc:
            out.append(
                f"{cc:.1f} cm³ beyond {limits.outside_margin_mm:g} mm outside the body receive more than "
                f"{100 * limits.outside_dose:g} % of {top:g} Gy: check the body contour and the dose grid"
            )
    return out
