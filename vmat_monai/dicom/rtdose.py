"""RTDOSE: writing a physical dose grid in Gy (reading lives beside it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from vmat_monai.dicom.common import (
    RT_DOSE_STORAGE,
    RT_PLAN_STORAGE,
    StudyInfo,
    new_dataset,
    save_atomic,
)
from vmat_monai.geometry import Grid

__all__ = ["write_rtdose"]


def write_rtdose(
    dose_gy: np.ndarray,
    grid: Grid,
    path: str | Path,
    study: StudyInfo,
    series_uid: str,
    sop_uid: str,
    plan_sop_uid: str | None = None,
    summation: str = "PLAN",
    description: str = "",
) -> Path:
    """Write a 3D dose (Gy, indexed [z, y, x] on ``grid``) as a multi-frame RTDOSE.

    Pixel data are 32-bit unsigned integers; DoseGridScaling is chosen so the maximum dose
    uses the full range (quantisation error < 1e-6 of the maximum).

    Args:
        dose_gy: physical dose, Gy (finite, >= 0).
        grid: the dose grid (axis-aligned).
        path: output file.
        study: patient/study identity (FrameOfReferenceUID included).
        series_uid: SeriesInstanceUID of the dose series.
        sop_uid: SOPInstanceUID of the dose object.
        plan_sop_uid: the RTPLAN this dose belongs to, if any (ReferencedRTPlanSequence).
        summation: DoseSummationType (``PLAN``, ``BEAM``, ...).
        description: SeriesDescription.
    """
    dose = np.asarray(dose_gy, dtype=np.float64)
    if dose.shape != tuple(grid.shape):
        raise ValueError(f"dose shape {dose.shape} does not match grid {grid.shape}")
    if not np.all(np.isfinite(dose)) or dose.min() < 0:
        raise ValueError(f"{path}: dose must be finite and non-negative")
    dmax = float(dose.max())
    scaling = dmax / (2**32 - 1) if dmax > 0 else 1.0
    pixels = np.rint(dose / scaling).astype(np.uint32)
    ds = new_dataset(RT_DOSE_STORAGE, sop_uid, study, "RTDOSE", series_uid)
    ds.SeriesDescription = description or "Dose"
    ds.InstanceNumber = 1
    ds.ImagePositionPatient = [f"{v:.4f}" for v in grid.origin]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    sx, sy, sz = grid.spacing
    ds.PixelSpacing = [f"{sy:.6f}", f"{sx:.6f}"]
    ds.SliceThickness = f"{sz:.6f}"
    ds.NumberOfFrames = int(grid.shape[0])
    ds.FrameIncrementPointer = (0x3004, 0x000C)
    ds.GridFrameOffsetVector = [f"{k * sz:.4f}" for k in range(grid.shape[0])]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = int(grid.shape[1]), int(grid.shape[2])
    ds.BitsAllocated = 32
    ds.BitsStored = 32
    ds.HighBit = 31
    ds.PixelRepresentation = 0
    ds.DoseUnits = "GY"
    ds.DoseType = "PHYSICAL"
    ds.DoseSummationType = summation
    ds.DoseGridScaling = f"{scaling:.10e}"
    if plan_sop_uid:
        ref = Dataset()
        ref.ReferencedSOPClassUID = RT_PLAN_STORAGE
        ref.ReferencedSOPInstanceUID = plan_sop_uid
        ds.ReferencedRTPlanSequence = Sequence([ref])
    ds.PixelData = pixels.tobytes()
    return save_atomic(ds, path)
