"""Predicted dose (NIfTI on the CT grid) -> DICOM RTDOSE in the patient's frame of reference.

The geometry comes from the NIfTI affine (RAS, written by the converter from the CT's DICOM
geometry), so the RTDOSE lands exactly on the planning CT. Identity:

- with the source DICOM-RT folder, the RTDOSE references the source study, frame of reference,
  CT series and RTPLAN (a planning system then places it on the patient); patient name and ID
  are copied only with ``keep_phi`` (otherwise they are the case id);
- without it, new UIDs are derived from the case id and the frame of reference is new: the file
  loads anywhere but will not register to the patient in a planning system.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vmat_monai.dicom.common import StudyInfo, uid_from
from vmat_monai.dicom.readers import CaseFiles, DicomInputError, discover, read_ct
from vmat_monai.dicom.rtdose import write_rtdose
from vmat_monai.geometry import Grid

__all__ = ["ExportResult", "export_rtdose", "grid_from_affine", "nifti_dose_on_grid"]


@dataclass(frozen=True)
class ExportResult:
    """What was written and how it is linked to the source."""

    path: Path
    referenced_study: bool
    warnings: list[str]


def grid_from_affine(affine_ras: np.ndarray, shape_xyz: tuple[int, ...]) -> Grid:
    """The LPS :class:`Grid` of an axis-aligned NIfTI (RAS affine, array x, y, z)."""
    a = np.diag([-1.0, -1.0, 1.0, 1.0]) @ np.asarray(affine_ras, dtype=np.float64)
    rot = a[:3, :3]
    spacing = np.diag(rot)
    if np.abs(rot - np.diag(spacing)).max() > 1e-4 or np.any(spacing <= 0):
        raise ValueError(
            "the NIfTI is not on an axis-aligned head-first grid (LPS affine diagonal positive); "
            "export predictions made on the converted CT grid"
        )
    origin = tuple(float(v) for v in a[:3, 3])
    return Grid(origin, tuple(float(v) for v in spacing), (int(shape_xyz[2]), int(shape_xyz[1]), int(shape_xyz[0])))  # type: ignore[arg-type]


def nifti_dose_on_grid(path: str | Path) -> tuple[np.ndarray, Grid]:
    """Dose [z, y, x] in Gy and its LPS grid from a NIfTI written by the predictor or converter."""
    import nibabel as nib

    img = nib.load(str(path))
    arr = np.asarray(img.dataobj, dtype=np.float64)
    if arr.ndim == 4 and arr.shape[3] == 1:
        arr = arr[..., 0]
    if arr.ndim != 3:
        raise ValueError(f"{path}: expected a 3D dose, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{path}: dose contains NaN/inf; re-run the prediction")
    grid = grid_from_affine(img.affine, arr.shape)
    return np.ascontiguousarray(arr.transpose(2, 1, 0)), grid


def _source_study(dicom_root: Path, source_hash: str | None, grid: Grid) -> tuple[CaseFiles, Grid]:
    """The study of ``dicom_root`` the prediction belongs to (by the case's source hash, else by CT grid)."""
    cases, _ = discover(dicom_root)  # raises when it holds no study
    if source_hash:
        hit = [
            c for c in cases if hashlib.sha256(f"{c.patient_id}|{c.study_uid}".encode()).hexdigest()[:16] == source_hash
        ]
        if not hit:
            raise DicomInputError(
                f"{dicom_root}: none of its {len(cases)} studies is the source of this case (source_hash "
                f"{source_hash}); pass the DICOM folder the case was converted from"
            )
        cases = hit
    for c in cases:
        for files in c.ct.values():
            ct = read_ct(files)
            if ct.grid.shape == grid.shape and np.allclose(ct.grid.origin, grid.origin, atol=1e-3):
                return c, ct.grid
    raise DicomInputError(
        f"{dicom_root}: no CT series there has the prediction's grid (origin {grid.origin}, shape {grid.shape}); "
        "pass the DICOM folder the case was converted from"
    )


def export_rtdose(
    pred: str | Path,
    out: str | Path,
    source_dicom: str | Path | None = None,
    case_json: str | Path | None = None,
    keep_phi: bool = False,
    description: str = "vmat-monai predicted dose",
) -> ExportResult:
    """Write the dose of the NIfTI ``pred`` as an RTDOSE file ``out``.

    Args:
        pred: predicted dose NIfTI (Gy, on the CT grid).
        out: output ``.dcm`` path (written atomically).
        source_dicom: DICOM-RT folder the case came from (to reference its study, frame and plan).
        case_json: the case's ``case.json`` (its case id and source hash pick the study).
        keep_phi: copy patient name and ID from the source.
        description: SeriesDescription of the dose.
    """
    import pydicom

    dose, grid = nifti_dose_on_grid(pred)
    dose = np.clip(dose, 0.0, None)
    info = json.loads(Path(case_json).read_text()) if case_json else {}
    case_id = str(info.get("case_id", Path(pred).parent.name))
    warnings: list[str] = []
    plan_uid = None
    if source_dicom is not None:
        files, _ = _source_study(Path(source_dicom), info.get("source_hash"), grid)
        ref = pydicom.dcmread(str(next(iter(files.ct.values()))[0]), stop_before_pixels=True)
        study = StudyInfo(
            patient_name=str(ref.get("PatientName", "")) if keep_phi else case_id,
            patient_id=str(ref.get("PatientID", "")) if keep_phi else case_id,
            study_uid=str(ref.StudyInstanceUID),
            frame_uid=str(ref.get("FrameOfReferenceUID", "")),
            study_date=str(ref.get("StudyDate", "")) if keep_phi else "",
            study_time=str(ref.get("StudyTime", "")) if keep_phi else "",
            study_id=str(ref.get("StudyID", "")) if keep_phi else "",
            extra={"PatientSex": str(ref.get("PatientSex", "")) if keep_phi else ""},
        )
        if files.rtplan:
            plan_uid = str(pydicom.dcmread(str(files.rtplan[0]), stop_before_pixels=True).SOPInstanceUID)
        else:
            warnings.append("no RTPLAN in the source: the dose references no plan")
    else:
        study = StudyInfo(
            case_id, case_id, uid_from("study", case_id), uid_from("frame", case_id), "", "", "", {"PatientSex": ""}
        )
        warnings.append("no source DICOM given: new frame of reference, will not register to the patient")
    series_uid = uid_from("rtdose-series", study.study_uid, case_id, description)
    sop_uid = uid_from("rtdose", study.study_uid, case_id, description, hashlib.sha256(dose.tobytes()).hexdigest())
    path = write_rtdose(dose, grid, out, study, series_uid, sop_uid, plan_sop_uid=plan_uid, description=description)
    return ExportResult(path, source_dicom is not None, warnings)
