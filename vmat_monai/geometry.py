"""Axis-aligned image grids in DICOM patient coordinates (LPS, mm).

Arrays on a :class:`Grid` are indexed ``[z, y, x]`` (slice, row, column), the order of a stack
of DICOM axial slices with ImageOrientationPatient ``[1, 0, 0, 0, 1, 0]``: x increases towards
the patient's left, y towards posterior, z towards the head.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Grid", "expand_mask"]


@dataclass(frozen=True)
class Grid:
    """A regular axis-aligned grid.

    Args:
        origin: patient coordinates (x, y, z) of voxel [0, 0, 0] centre, mm.
        spacing: voxel size (x, y, z), mm.
        shape: array shape (nz, ny, nx).
    """

    origin: tuple[float, float, float]
    spacing: tuple[float, float, float]
    shape: tuple[int, int, int]

    def axis(self, dim: str) -> np.ndarray:
        """Voxel-centre coordinates along ``"x"``, ``"y"`` or ``"z"``, mm."""
        i = "xyz".index(dim)
        n = self.shape[2 - i]
        return self.origin[i] + self.spacing[i] * np.arange(n)

    @property
    def xs(self) -> np.ndarray:
        return self.axis("x")

    @property
    def ys(self) -> np.ndarray:
        return self.axis("y")

    @property
    def zs(self) -> np.ndarray:
        return self.axis("z")

    @property
    def voxel_volume_cc(self) -> float:
        """Volume of one voxel, cm³."""
        return float(np.prod(self.spacing)) / 1000.0

    def index_range(self, dim: str, lo: float, hi: float) -> slice:
        """Slice of indices whose centres fall in [lo, hi] mm along ``dim`` (may be empty)."""
        ax = self.axis(dim)
        i0 = int(np.searchsorted(ax, lo, side="left"))
        i1 = int(np.searchsorted(ax, hi, side="right"))
        return slice(max(i0, 0), max(min(i1, len(ax)), 0))

    def box(
        self, lo: np.ndarray, hi: np.ndarray
    ) -> tuple[tuple[slice, slice, slice], tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Index slices ``[z, y, x]`` and broadcastable coordinates of the box [lo, hi] (x, y, z)."""
        sx = self.index_range("x", lo[0], hi[0])
        sy = self.index_range("y", lo[1], hi[1])
        sz = self.index_range("z", lo[2], hi[2])
        z = self.zs[sz][:, None, None]
        y = self.ys[sy][None, :, None]
        x = self.xs[sx][None, None, :]
        return (sz, sy, sx), (x, y, z)

    def affine_lps(self) -> np.ndarray:
        """4×4 matrix from (x_index, y_index, z_index) to LPS mm."""
        a = np.diag([*self.spacing, 1.0])
        a[:3, 3] = self.origin
        return a

    def affine_ras(self) -> np.ndarray:
        """4×4 matrix from (x_index, y_index, z_index) to RAS mm (NIfTI/MONAI convention)."""
        return np.diag([-1.0, -1.0, 1.0, 1.0]) @ self.affine_lps()

    def world_to_index(self, pts: np.ndarray) -> np.ndarray:
        """Continuous indices (z, y, x) of LPS points ``pts[..., (x, y, z)]``."""
        p = np.asarray(pts, dtype=np.float64)
        idx = (p - np.asarray(self.origin)) / np.asarray(self.spacing)
        return idx[..., ::-1]


def expand_mask(mask: np.ndarray, spacing_mm: Sequence[float], margin_mm: float) -> np.ndarray:
    """Isotropic expansion of a boolean ``mask`` by ``margin_mm`` (exact Euclidean distance with
    ``spacing_mm`` given in the array's axis order), computed on the mask's padded bounding box."""
    from scipy import ndimage

    if not mask.any():
        return mask.copy()
    sp = np.asarray(spacing_mm, dtype=float)
    pad = np.ceil(margin_mm / sp).astype(int) + 1
    nz = np.nonzero(mask)
    lo = np.maximum(np.array([a.min() for a in nz]) - pad, 0)
    hi = np.minimum(np.array([a.max() + 1 for a in nz]) + pad, mask.shape)
    sl = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    dist = ndimage.distance_transform_edt(~mask[sl], sampling=sp)
    out = np.zeros_like(mask)
    out[sl] = dist <= margin_mm
    return out
