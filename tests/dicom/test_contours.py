"""Partial-volume occupancy of RTSTRUCT polygons against exact areas."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from vmat_monai.dicom.contours import contour_occupancy, polygon_occupancy
from vmat_monai.geometry import Grid


def test_square_and_circle_areas():
    # a 4.5 x 3.25 pixel rectangle not aligned with pixel edges
    cols = np.array([2.3, 6.8, 6.8, 2.3])
    rows = np.array([1.1, 1.1, 4.35, 4.35])
    occ = polygon_occupancy(cols, rows, (8, 10), supersample=8)
    assert occ.sum() == pytest.approx(4.5 * 3.25, rel=0.02)
    assert occ[2, 4] == 1.0 and occ[6, 4] == 0.0
    t = np.linspace(0, 2 * np.pi, 200, endpoint=False)
    occ = polygon_occupancy(20 + 7.3 * np.cos(t), 20 + 7.3 * np.sin(t), (40, 40), supersample=4)
    assert occ.sum() == pytest.approx(np.pi * 7.3**2, rel=0.01)


def _rtstruct(contours):
    ds = Dataset()
    rc = Dataset()
    rc.ReferencedROINumber = 3
    seq = []
    for pts in contours:
        c = Dataset()
        c.ContourGeometricType = "CLOSED_PLANAR"
        c.ContourData = [float(v) for v in np.asarray(pts).ravel()]
        seq.append(c)
    rc.ContourSequence = Sequence(seq)
    ds.ROIContourSequence = Sequence([rc])
    return ds


def _square(x0, y0, size, z):
    return [[x0, y0, z], [x0 + size, y0, z], [x0 + size, y0 + size, z], [x0, y0 + size, z]]


def test_an_inner_contour_cuts_a_hole_and_contours_find_their_slice():
    grid = Grid((-10.0, -10.0, 0.0), (1.0, 1.0, 2.5), (4, 24, 24))  # slices at z = 0, 2.5, 5, 7.5
    ds = _rtstruct([_square(-8, -8, 16, 5.0), _square(-4, -4, 8, 5.0), _square(-2, -2, 4, 7.6)])
    occ = contour_occupancy(ds, 3, grid)
    assert occ[2].sum() == pytest.approx(16 * 16 - 8 * 8, rel=0.01)
    assert occ[3].sum() == pytest.approx(16, rel=0.01)
    assert occ[0].sum() == 0 and occ[1].sum() == 0
    assert contour_occupancy(ds, 99, grid).sum() == 0  # another ROI: nothing
