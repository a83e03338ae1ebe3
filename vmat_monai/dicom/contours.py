"""RTSTRUCT contours as partial-volume occupancy on an image grid (for DVH evaluation).

The binary training masks come from rt-utils (``readers.roi_mask``). rt-utils rounds contour
vertices to whole pixels and fills the polygon *including* its edge pixels, which makes a mask
about half a pixel larger all round than the polygon a planning system drew. For dose-volume
statistics that is a bias in the dose gradient, so DVHs against DICOM contours use this module:
the fraction of each voxel inside the contour polygon, from ``supersample²`` sub-pixel points
per voxel (point-in-polygon at sub-pixel centres; several contours on one slice combine by the
even-odd rule, so an inner contour cuts a hole, as DICOM specifies).
"""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset

from vmat_monai.geometry import Grid

__all__ = ["contour_occupancy", "polygon_occupancy"]


def polygon_occupancy(cols: np.ndarray, rows: np.ndarray, shape: tuple[int, int], supersample: int = 4) -> np.ndarray:
    """Fraction (0…1) of each pixel of a ``shape`` (rows, cols) plane inside a polygon.

    Args:
        cols: polygon vertex x positions in continuous pixel units (pixel centres at integers).
        rows: polygon vertex y positions, same units.
        shape: plane shape (rows, cols).
        supersample: sub-pixel samples per pixel along each axis.
    """
    from matplotlib.path import Path as MplPath

    out = np.zeros(shape, dtype=np.float32)
    r0, r1 = max(int(np.floor(rows.min())), 0), min(int(np.ceil(rows.max())) + 1, shape[0])
    c0, c1 = max(int(np.floor(cols.min())), 0), min(int(np.ceil(cols.max())) + 1, shape[1])
    if r0 >= r1 or c0 >= c1:
        return out
    s = int(supersample)
    offs = (np.arange(s) + 0.5) / s - 0.5
    rr = (np.arange(r0, r1)[:, None] + offs[None, :]).ravel()
    cc = (np.arange(c0, c1)[:, None] + offs[None, :]).ravel()
    gr, gc = np.meshgrid(rr, cc, indexing="ij")
    inside = MplPath(np.stack([cols, rows], 1)).contains_points(np.stack([gc.ravel(), gr.ravel()], 1))
    frac = inside.reshape(r1 - r0, s, c1 - c0, s).mean(axis=(1, 3))
    out[r0:r1, c0:c1] = frac
    return out


def contour_occupancy(ds: Dataset, roi_number: int, grid: Grid, supersample: int = 4) -> np.ndarray:
    """Partial-volume occupancy [z, y, x] (0…1, float32) of one ROI of an RTSTRUCT on ``grid``.

    Each contour is assigned to the slice whose centre is nearest its z (contours more than half
    a slice away from every slice are ignored); within a slice, contours combine even-odd.
    An ROI without contours gives an all-zero array.
    """
    occ = np.zeros(grid.shape, dtype=np.float32)
    zs = grid.zs
    for rc in ds.get("ROIContourSequence", []):
        if int(rc.ReferencedROINumber) != int(roi_number):
            continue
        for c in rc.get("ContourSequence", []):
            pts = np.asarray(c.ContourData, dtype=np.float64).reshape(-1, 3)
            if len(pts) < 3:
                continue
            k = int(np.argmin(np.abs(zs - pts[0, 2])))
            if abs(zs[k] - pts[0, 2]) > 0.5 * grid.spacing[2] + 1e-3:
                continue
            cols = (pts[:, 0] - grid.origin[0]) / grid.spacing[0]
            rows = (pts[:, 1] - grid.origin[1]) / grid.spacing[1]
            frac = polygon_occupancy(cols, rows, grid.shape[1:], supersample)
            occ[k] = np.abs(occ[k] - frac)  # even-odd: a contour inside another cuts a hole
    return occ
