"""CT image series: writing axial slices (reading lives beside it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vmat_monai.dicom.common import CT_IMAGE_STORAGE, StudyInfo, new_dataset, save_atomic, uid_from
from vmat_monai.geometry import Grid

__all__ = ["write_ct_series"]

RESCALE_INTERCEPT = -1024.0


def write_ct_series(hu: np.ndarray, grid: Grid, folder: str | Path, study: StudyInfo, series_uid: str) -> list[str]:
    """Write a head-first-supine axial CT series, one file per slice.

    Args:
        hu: Hounsfield units on ``grid``, indexed [z, y, x].
        grid: the CT grid (axis-aligned, ImageOrientationPatient [1,0,0,0,1,0]).
        folder: output folder (created).
        study: patient/study identity.
        series_uid: SeriesInstanceUID.

    Returns:
        The SOPInstanceUIDs in slice order (inferior to superior).
    """
    folder = Path(folder)
    stored = np.clip(np.rint(hu - RESCALE_INTERCEPT), 0, 4095).astype(np.uint16)
    sx, sy, sz = grid.spacing
    uids = []
    for k, z in enumerate(grid.zs):
        sop = uid_from(series_uid, "slice", k)
        ds = new_dataset(CT_IMAGE_STORAGE, sop, study, "CT", series_uid)
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.SeriesDescription = "Planning CT (synthetic)"
        ds.InstanceNumber = k + 1
        ds.PatientPosition = "HFS"
        ds.ImagePositionPatient = [f"{grid.origin[0]:.4f}", f"{grid.origin[1]:.4f}", f"{z:.4f}"]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.SliceLocation = f"{z:.4f}"
        ds.SliceThickness = f"{sz:.4f}"
        ds.PixelSpacing = [f"{sy:.6f}", f"{sx:.6f}"]  # row spacing (y), column spacing (x)
        ds.KVP = "120"
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = int(grid.shape[1]), int(grid.shape[2])
        ds.BitsAllocated = 16
        ds.BitsStored = 12
        ds.HighBit = 11
        ds.PixelRepresentation = 0
        ds.RescaleIntercept = f"{RESCALE_INTERCEPT:g}"
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
        ds.WindowCenter = "40"
        ds.WindowWidth = "400"
        ds.PixelData = stored[k].tobytes()
        save_atomic(ds, folder / f"CT.{k + 1:04d}.dcm")
        uids.append(sop)
    return uids
