"""Reading DICOM-RT: discovery of cases in a folder tree, CT series, RTSTRUCT, RTDOSE (RTPLAN:
vmat_monai.dicom.plan_reading).

Every reader raises :class:`DicomInputError` with a message that names the file and says what
to do; the converter turns those into per-case errors and goes on with the other cases.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from vmat_monai.errors import SourceInputError
from vmat_monai.file_walk import walk_files
from vmat_monai.geometry import Grid

__all__ = [
    "CaseFiles",
    "DicomInputError",
    "discover",
    "duplicate_roi_names",
    "grid_box_mm",
    "load_rtstruct",
    "read_ct",
    "read_rtdose",
    "read_rtdose_on",
    "read_structures",
    "referenced_ct_series",
    "roi_mask",
]


class DicomInputError(SourceInputError):
    """A problem with the input DICOM that the user must fix (message names file and fix)."""


@dataclass
class CaseFiles:
    """The DICOM files of one patient study, grouped by modality."""

    study_uid: str
    patient_id: str
    ct: dict[str, list[Path]] = field(default_factory=dict)  # series UID -> files
    rtstruct: list[Path] = field(default_factory=list)
    rtplan: list[Path] = field(default_factory=list)
    rtdose: list[Path] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)

    @property
    def folder(self) -> Path:
        """The deepest folder holding all of the case's files."""
        files = [p for v in self.ct.values() for p in v] + self.rtstruct + self.rtplan + self.rtdose
        parts = [p.parent.parts for p in files]
        common = []
        for level in zip(*parts, strict=False):
            if len(set(level)) != 1:
                break
            common.append(level[0])
        return Path(*common) if common else Path(".")


def discover(root: str | Path) -> tuple[list[CaseFiles], list[str]]:
    """Walk ``root`` and group DICOM files by StudyInstanceUID (any layout, any file names;
    symbolic links to folders followed, see :func:`vmat_monai.file_walk.walk_files`).

    Returns:
        (cases, problems): problems name files that look like DICOM but cannot be read.

    Raises:
        DicomInputError: ``root`` is not a folder, or no DICOM study lies below it (the message
            says what was looked for and what was seen).
    """
    root = Path(root)
    if not root.is_dir():
        raise DicomInputError(f"input folder {root} does not exist or is not a folder")
    cases: dict[str, CaseFiles] = {}
    problems: list[str] = []
    unreadable_by_dir: dict[Path, list[str]] = defaultdict(list)
    files = walk_files(root)
    for path in files:
        try:
            ds = pydicom.dcmread(str(path), stop_before_pixels=True)
            modality = str(ds.get("Modality", ""))
            study = str(ds.StudyInstanceUID)
        except Exception as exc:
            if path.suffix.lower() in (".dcm", ".dicom", ".ima") or _has_dicm_preamble(path):
                msg = f"{path}: unreadable DICOM ({type(exc).__name__}: {str(exc)[:120]}); re-export the file"
                problems.append(msg)
                unreadable_by_dir[path.parent].append(msg)
            continue
        case = cases.setdefault(study, CaseFiles(study, str(ds.get("PatientID", ""))))
        if modality == "CT":
            series = str(ds.SeriesInstanceUID)
            case.ct.setdefault(series, []).append(path)
        elif modality == "RTSTRUCT":
            case.rtstruct.append(path)
        elif modality == "RTPLAN":
            case.rtplan.append(path)
        elif modality == "RTDOSE":
            case.rtdose.append(path)
    if not cases:
        seen = f"{len(files)} file(s) seen, {len(problems)} of them unreadable DICOM" if files else "no files at all"
        raise DicomInputError(
            f"no DICOM study found under {root} ({seen}): looked for CT, RTSTRUCT, RTPLAN and RTDOSE files "
            "(any file name) in every folder below it, symbolic links followed; point --input at the folder "
            "that holds the patients' exports"
        )
    for case in cases.values():
        folder = case.folder
        for d, msgs in unreadable_by_dir.items():
            if d == folder or folder in d.parents:
                case.unreadable += msgs
    return sorted(cases.values(), key=lambda c: (c.patient_id, c.study_uid)), problems


def _has_dicm_preamble(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(132)
        return head[128:132] == b"DICM"
    except OSError:
        return False


# -- CT ---------------------------------------------------------------------------------------


@dataclass
class CTVolume:
    """CT in HU indexed [z, y, x] on an axis-aligned grid, with the series' datasets."""

    hu: np.ndarray
    grid: Grid
    datasets: list[Dataset]
    series_uid: str
    frame_uid: str
    warnings: list[str]


def read_ct(files: Iterable[Path]) -> CTVolume:
    """Read a CT series: sort by position, apply slope/intercept, check the slice spacing."""
    dss = []
    for f in files:
        try:
            dss.append(pydicom.dcmread(str(f)))
        except Exception as exc:
            raise DicomInputError(f"{f}: unreadable CT slice ({exc}); re-export the series") from None
    if not dss:
        raise DicomInputError("no CT slices")
    iop = np.array([float(v) for v in dss[0].ImageOrientationPatient])
    if not np.allclose(iop, [1, 0, 0, 0, 1, 0], atol=1e-3):
        raise DicomInputError(
            f"{files_hint(dss)}: ImageOrientationPatient {iop.tolist()} is not axial head-first supine; "
            "only axis-aligned HFS CT is supported: resample the series to axial"
        )
    dss.sort(key=lambda d: float(d.ImagePositionPatient[2]))
    z = np.array([float(d.ImagePositionPatient[2]) for d in dss])
    warnings: list[str] = []
    if len(z) > 1:
        dz = np.diff(z)
        if np.any(dz < 1e-3):
            raise DicomInputError(f"{files_hint(dss)}: duplicate slice positions; remove the duplicate slices")
        step = float(np.median(dz))
        gaps = np.nonzero(dz > 1.5 * step)[0]
        if gaps.size:
            raise DicomInputError(
                f"{files_hint(dss)}: {int(gaps.size)} missing slice(s) (gap of {dz[gaps[0]]:.2f} mm at "
                f"z={z[gaps[0]]:.1f} mm where the spacing is {step:.2f} mm); re-export the complete series"
            )
        if dz.max() - dz.min() > 0.01:
            raise DicomInputError(
                f"{files_hint(dss)}: non-uniform slice spacing ({dz.min():.3f}-{dz.max():.3f} mm); "
                "resample the series to a uniform spacing"
            )
    else:
        step = float(dss[0].get("SliceThickness", 1.0) or 1.0)
    rows, cols = int(dss[0].Rows), int(dss[0].Columns)
    hu = np.empty((len(dss), rows, cols), dtype=np.float32)
    for k, d in enumerate(dss):
        if (int(d.Rows), int(d.Columns)) != (rows, cols):
            raise DicomInputError(f"{files_hint(dss)}: slices of different sizes; re-export the series")
        slope = float(d.get("RescaleSlope", 1.0))
        icpt = float(d.get("RescaleIntercept", 0.0))
        hu[k] = d.pixel_array.astype(np.float32) * slope + icpt
    if not np.all(np.isfinite(hu)):
        raise DicomInputError(f"{files_hint(dss)}: CT contains NaN/inf values")
    row_sp, col_sp = (float(v) for v in dss[0].PixelSpacing)
    ipp = [float(v) for v in dss[0].ImagePositionPatient]
    grid = Grid((ipp[0], ipp[1], z[0]), (col_sp, row_sp, step), hu.shape)  # type: ignore[arg-type]
    return CTVolume(hu, grid, dss, str(dss[0].SeriesInstanceUID), str(dss[0].get("FrameOfReferenceUID", "")), warnings)


def files_hint(dss: list[Dataset]) -> str:
    """Short description of a series for messages (folder of its first file)."""
    fn = getattr(dss[0], "filename", None)
    return f"CT series in {Path(fn).parent}" if fn else "CT series"


# -- RTSTRUCT ---------------------------------------------------------------------------------


def load_rtstruct(path: Path) -> Dataset:
    """Read and validate an RTSTRUCT file."""
    try:
        ds = pydicom.dcmread(str(path))
    except Exception as exc:
        raise DicomInputError(f"{path}: unreadable RTSTRUCT ({exc}); re-export it") from None
    if "StructureSetROISequence" not in ds or "ROIContourSequence" not in ds:
        raise DicomInputError(f"{path}: RTSTRUCT without StructureSetROISequence/ROIContourSequence")
    return ds


def referenced_ct_series(ds: Dataset) -> str | None:
    """SeriesInstanceUID of the CT an RTSTRUCT was drawn on, if it says."""
    try:
        return str(
            ds.ReferencedFrameOfReferenceSequence[0]
            .RTReferencedStudySequence[0]
            .RTReferencedSeriesSequence[0]
            .SeriesInstanceUID
        )
    except (AttributeError, IndexError):
        return None


def read_structures(ds: Dataset, ct: CTVolume) -> tuple[dict[str, int], Any]:
    """Open a loaded RTSTRUCT against the CT: (ROI name -> number, rt-utils RTStruct)."""
    from rt_utils.rtstruct import RTStruct

    frames = {str(r.FrameOfReferenceUID) for r in ds.get("ReferencedFrameOfReferenceSequence", [])}
    if ct.frame_uid and frames and ct.frame_uid not in frames:
        raise DicomInputError(
            f"{ds.filename}: RTSTRUCT frame of reference {sorted(frames)} differs from the CT's {ct.frame_uid}; "
            "export the structures drawn on this CT"
        )
    names: dict[str, int] = {}
    for r in ds.StructureSetROISequence:
        names.setdefault(str(r.ROIName), int(r.ROINumber))  # duplicate names: the first one is used
    return names, RTStruct(ct.datasets, ds)


def duplicate_roi_names(ds: Dataset) -> list[str]:
    """ROI names that occur more than once in an RTSTRUCT (compared case-insensitively)."""
    seen: dict[str, int] = {}
    for r in ds.StructureSetROISequence:
        key = str(r.ROIName).strip().lower()
        seen[key] = seen.get(key, 0) + 1
    return sorted(k for k, n in seen.items() if n > 1)


def roi_mask(rt: Any, name: str, ct: CTVolume) -> np.ndarray:
    """Binary mask [z, y, x] of one ROI on the CT grid (rt-utils polygon filling)."""
    try:
        m = rt.get_roi_mask_by_name(name)  # [row, col, slice]
    except AttributeError:  # an ROI without ContourSequence: an empty contour
        return np.zeros(ct.hu.shape, dtype=bool)
    return np.ascontiguousarray(np.asarray(m, dtype=bool).transpose(2, 0, 1))


# -- RTDOSE -----------------------------------------------------------------------------------


def read_rtdose(path: str | Path) -> tuple[np.ndarray, Grid, Dataset]:
    """Dose in Gy ([z, y, x]), its axis-aligned grid and the dataset, with units and values checked."""
    path = Path(path)
    try:
        ds = pydicom.dcmread(str(path))
        arr = ds.pixel_array
    except Exception as exc:
        raise DicomInputError(f"{path}: unreadable RTDOSE ({exc}); re-export it") from None
    units = str(ds.get("DoseUnits", "")).upper()
    if units != "GY":
        raise DicomInputError(
            f"{path}: DoseUnits is {units or 'missing'} (relative dose); export the dose in Gy (absolute, DoseUnits GY)"
        )
    if "DoseGridScaling" not in ds:
        raise DicomInputError(f"{path}: RTDOSE without DoseGridScaling")
    dose = arr.astype(np.float64) * float(ds.DoseGridScaling)
    if dose.ndim == 2:
        dose = dose[None]
    if not np.all(np.isfinite(dose)):
        raise DicomInputError(f"{path}: RTDOSE contains NaN/inf values")
    iop = np.array([float(v) for v in ds.ImageOrientationPatient])
    if not np.allclose(iop, [1, 0, 0, 0, 1, 0], atol=1e-3):
        raise DicomInputError(f"{path}: oblique RTDOSE grids are not supported")
    offsets = np.asarray([float(v) for v in ds.get("GridFrameOffsetVector", [0.0])])
    if len(offsets) != dose.shape[0]:
        raise DicomInputError(f"{path}: GridFrameOffsetVector has {len(offsets)} values for {dose.shape[0]} frames")
    dz = np.diff(offsets)
    if dose.shape[0] > 1 and (dz.max() - dz.min() > 0.01 or dz.min() <= 0):
        raise DicomInputError(f"{path}: non-uniform dose frame spacing; resample the dose grid")
    ipp = [float(v) for v in ds.ImagePositionPatient]
    row, col = (float(v) for v in ds.PixelSpacing)
    step = float(dz[0]) if dose.shape[0] > 1 else float(ds.get("SliceThickness", 1.0) or 1.0)
    grid = Grid((ipp[0], ipp[1], ipp[2] + offsets[0]), (col, row, step), dose.shape)  # type: ignore[arg-type]
    return dose, grid, ds


def _sitk_image(array_zyx: np.ndarray, grid: Grid) -> Any:
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.asarray(array_zyx, dtype=np.float32))
    img.SetOrigin(tuple(float(v) for v in grid.origin))
    img.SetSpacing(tuple(float(v) for v in grid.spacing))
    return img


def grid_box_mm(grids: list[Grid]) -> list[list[float]]:
    """The patient-coordinate box (x, y, z: [low, high] voxel centres, mm) that the grids cover together."""
    lo = np.min([[float(min(g.axis(d)[0], g.axis(d)[-1])) for d in "xyz"] for g in grids], axis=0)
    hi = np.max([[float(max(g.axis(d)[0], g.axis(d)[-1])) for d in "xyz"] for g in grids], axis=0)
    return [[round(float(a), 3), round(float(b), 3)] for a, b in zip(lo, hi, strict=True)]


def read_rtdose_on(paths: list[Path], ct: CTVolume) -> tuple[np.ndarray, dict[str, Any]]:
    """Dose in Gy resampled onto the CT grid (trilinear, 0 outside the dose grid).

    Several files of one plan are combined: a ``PLAN`` summation is used as is; otherwise
    per-beam (``BEAM``/``FRACTION``...) doses are summed. Returns (dose [z, y, x], info).
    """
    import SimpleITK as sitk

    images, grid_of = [], {}
    for p in paths:
        dose, grid, ds = read_rtdose(p)
        images.append((p, _sitk_image(dose, grid), ds))
        grid_of[p] = grid
    for p, _, ds in images:
        fr = str(ds.get("FrameOfReferenceUID", ""))
        if ct.frame_uid and fr and fr != ct.frame_uid:
            raise DicomInputError(f"{p}: RTDOSE frame of reference {fr} differs from the CT's {ct.frame_uid}")
    plan_sums = [x for x in images if str(x[2].get("DoseSummationType", "")).upper() == "PLAN"]
    used = plan_sums[:1] if plan_sums else images
    ref = _sitk_image(np.zeros(ct.hu.shape, np.float32), ct.grid)
    total = np.zeros(ct.hu.shape, np.float64)
    for _, img, _ in used:
        res = sitk.Resample(img, ref, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
        total += sitk.GetArrayFromImage(res)
    info = {
        "files": [p.name for p, _, _ in used],
        "summation": "PLAN"
        if plan_sums
        else "sum of " + ",".join(str(x[2].get("DoseSummationType", "?")) for x in used),
        "dose_type": sorted({str(x[2].get("DoseType", "")) for x in used}),
        "native_spacing_mm": list(images[0][1].GetSpacing()),
        "interpolation": "trilinear (SimpleITK sitkLinear), 0 outside the dose grid",
        "grid_box_mm": grid_box_mm([grid_of[p] for p, _, _ in used]),
    }
    if len(plan_sums) > 1:
        info["warning"] = f"{len(plan_sums)} PLAN dose files; used {plan_sums[0][0].name}"
    return total.astype(np.float32), info
