"""Plan plausibility warnings on a phantom with known answers."""

from __future__ import annotations

import numpy as np

from vmat_monai.data.plan_plausibility import PlausibilityLimits, plausibility_warnings
from vmat_monai.geometry import Grid
from vmat_monai.structures import PROSTATE_SIB

GRID = Grid(origin=(0.0, 0.0, 0.0), spacing=(2.0, 2.0, 2.0), shape=(60, 60, 60))  # 0.008 cm³ per voxel


def _phantom():
    """Body 60³ voxels; PTV70 a 20³ cube (64 cm³) inside a 30³ PTV56 shell region; rectum 15x15x20 voxels."""
    shape = (60, 60, 60)
    masks = np.zeros((PROSTATE_SIB.n_channels, *shape), bool)
    body = np.zeros(shape, bool)
    body[5:55, 5:55, 5:55] = True
    masks[PROSTATE_SIB.index("PTV56")][15:45, 15:45, 15:45] = True
    masks[PROSTATE_SIB.index("PTV70")][20:40, 20:40, 20:40] = True
    masks[PROSTATE_SIB.index("Rectum")][20:40, 40:55, 22:37] = True  # 20*15*15 voxels = 36 cm³
    dose = np.where(body, 30.0, 0.0).astype(np.float32)
    dose[masks[PROSTATE_SIB.index("PTV56")]] = 57.0
    dose[masks[PROSTATE_SIB.index("PTV70")]] = 71.0
    found = {s: s for s in ("PTV70", "PTV56", "Rectum")}
    return dose, masks, body, found


def _warn(dose, masks, body, found, **kw):
    return plausibility_warnings(dose, masks, body, PROSTATE_SIB, found, dict(PROSTATE_SIB.targets), GRID, **kw)


def test_a_plausible_plan_gives_no_warning():
    assert _warn(*_phantom()) == []


def test_target_under_coverage_is_named_with_its_fraction():
    dose, masks, body, found = _phantom()
    dose[masks[PROSTATE_SIB.index("PTV56")] & ~masks[PROSTATE_SIB.index("PTV70")]] = 0.69 * 56.0
    (w,) = _warn(dose, masks, body, found)
    # D95 of PTV56: 19/27 of its voxels at 38.64 Gy, 8/27 at 71 Gy -> D95 = 38.64 Gy = 69.0 %
    assert w.startswith("PTV56 D95 38.64 Gy is 69.0 % of its 56 Gy level (< 90 %)")


def test_hot_spot_needs_its_volume():
    dose, masks, body, found = _phantom()
    dose[30, 30, 30:33] = 85.0  # 3 voxels = 0.024 cm³ < 0.03 cm³ (4 voxels): not a hot spot
    assert _warn(dose, masks, body, found) == []
    dose[30, 30, 30:34] = 85.0  # 4 voxels = 0.032 cm³ at 121 %
    (w,) = _warn(dose, masks, body, found)
    assert w.startswith("hot spot: the hottest 0.03 cm³ receive at least 85.0 Gy, 121.4 % of 70 Gy")


def test_dose_outside_the_body_beyond_the_margin():
    dose, masks, body, found = _phantom()
    dose[0:2, 0:10, 0:10] = 20.0  # 200 voxels = 1.6 cm³ more than 5 mm outside the body, at 29 % of 70 Gy
    dose[4, 20:30, 20:30] = 60.0  # 2 mm outside: the resampled skin dose, tolerated
    (w,) = _warn(dose, masks, body, found)
    assert w.startswith("1.6 cm³ beyond 5 mm outside the body receive more than 10 % of 70 Gy")
    assert _warn(dose, masks, body, found, limits=PlausibilityLimits(outside_cc=2.0)) == []


def test_structures_outside_the_scan_or_the_dose_grid_and_odd_sizes():
    dose, masks, body, found = _phantom()
    box = [[0.0, 118.0], [0.0, 118.0], [0.0, 58.0]]  # x, y, z: the grid stops at z = 58 mm (slice 29)
    ws = _warn(dose, masks, body, found, grid_box_mm=box)
    # slices 30..39 of the 20 PTV70 slices (50 %), 30..44 of PTV56's 30 (50 %), 30..39 of the rectum's 20
    assert "50.0 % of PTV70 lies outside the dose grid (its dose reads 0 there; 71.0 Gy where the grid ends)" in ws
    assert "50.0 % of PTV56 lies outside the dose grid (its dose reads 0 there; 71.0 Gy where the grid ends)" in ws
    assert "50.0 % of Rectum lies outside the dose grid (its dose reads 0 there; 57.0 Gy where the grid ends)" in ws
    # an organ that leaves the grid where it gets (almost) no dose is normal
    dose[masks[PROSTATE_SIB.index("Rectum")] & (np.arange(60) >= 28)[:, None, None]] = 3.0
    ws = _warn(dose, masks, body, found, grid_box_mm=box)
    assert not [w for w in ws if "Rectum" in w] and len(ws) == 2
    masks[PROSTATE_SIB.index("Rectum")] = False
    masks[PROSTATE_SIB.index("Rectum")][30, 45:50, 25:30] = True  # 25 voxels = 0.2 cm³: one slice
    masks[PROSTATE_SIB.index("PTV70")][0:2, 28:32, 28:32] = True  # reaches the first CT slice
    ws = _warn(dose, masks, body, found)
    assert any(w.startswith("Rectum volume 0.2 cm³ is far outside the usual 15-300 cm³") for w in ws)
    assert any(w.startswith("PTV70 touches the first or last CT slice") for w in ws)
    assert _warn(None, masks, body, found) == [w for w in ws if "volume" in w or "touches" in w]
