"""RTSTRUCT: writing contours from binary masks on a CT series, through rt-utils."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from vmat_monai.dicom.common import StudyInfo, save_atomic

__all__ = ["write_rtstruct"]

# A colour-blind-safe cycle (Okabe-Ito) for ROI display colours
_COLOURS = [
    [230, 159, 0],
    [86, 180, 233],
    [0, 158, 115],
    [240, 228, 66],
    [0, 114, 178],
    [213, 94, 0],
    [204, 121, 167],
    [0, 0, 0],
]


def write_rtstruct(
    ct_folder: str | Path,
    masks: Mapping[str, np.ndarray],
    path: str | Path,
    study: StudyInfo,
    series_uid: str,
    sop_uid: str,
    roi_types: Mapping[str, str] | None = None,
) -> dict[str, int]:
    """Contour each mask on the CT series in ``ct_folder`` and write an RTSTRUCT.

    Args:
        ct_folder: folder holding the CT series only.
        masks: ROI name -> boolean mask indexed [z, y, x] on the CT grid (slices ascending).
        path: output file.
        study: identity of the case (must match the CT series).
        series_uid: SeriesInstanceUID of the structure set.
        sop_uid: SOPInstanceUID of the structure set.
        roi_types: ROI name -> RTROIInterpretedType (``EXTERNAL``, ``PTV``, ``ORGAN``, ...).

    Returns:
        ROI name -> ROI number.
    """
    from rt_utils import RTStructBuilder

    rt = RTStructBuilder.create_new(dicom_series_path=str(ct_folder))
    numbers = {}
    for k, (name, mask) in enumerate(masks.items()):
        m = np.asarray(mask, dtype=bool)
        if not m.any():
            continue
        # rt-utils expects [row, column, slice]
        rt.add_roi(mask=np.ascontiguousarray(m.transpose(1, 2, 0)), name=name, color=_COLOURS[k % len(_COLOURS)])
        numbers[name] = len(rt.ds.StructureSetROISequence)
    ds = rt.ds
    ds.SOPInstanceUID = sop_uid
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.SeriesInstanceUID = series_uid
    ds.StructureSetLabel = "Synthetic"
    ds.Manufacturer = "vmat-monai"
    ds.InstitutionName = ""
    ds.StudyDate = study.study_date
    ds.StudyTime = study.study_time
    ds.StructureSetDate = study.study_date
    ds.StructureSetTime = study.study_time
    ds.InstanceCreationDate = study.study_date
    ds.InstanceCreationTime = study.study_time
    types = dict(roi_types or {})
    for obs in ds.RTROIObservationsSequence:
        name = next(r.ROIName for r in ds.StructureSetROISequence if r.ROINumber == obs.ReferencedROINumber)
        obs.RTROIInterpretedType = types.get(name, "ORGAN")
        obs.ROIInterpreter = ""
    save_atomic(ds, path)
    return numbers
