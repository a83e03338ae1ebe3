"""Read a synthetic cohort back from its DICOM files and check the plan properties.

Everything here works from the written files only (SimpleITK for the CT series, rt-utils for
the contours, pydicom for RTPLAN/RTDOSE); the sidecar JSON is used only to know which ROI name
the generator gave each canonical structure.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from scipy import ndimage

from vmat_monai.data.synthetic.cohort import SIDECAR
from vmat_monai.dicom.readers import read_rtdose
from vmat_monai.geometry import Grid

__all__ = ["check_case", "check_cohort"]


def check_case(case_dir: str | Path) -> dict[str, Any]:
    """Check one synthetic case from its files; returns metrics and a list of problems."""
    import SimpleITK as sitk
    from rt_utils import RTStructBuilder

    case_dir = Path(case_dir)
    side = json.loads((case_dir / SIDECAR).read_text())
    problems: list[str] = []
    reader = sitk.ImageSeriesReader()
    files = reader.GetGDCMSeriesFileNames(str(case_dir / "CT"))
    reader.SetFileNames(files)
    img = reader.Execute()
    hu = sitk.GetArrayViewFromImage(img)
    if not (-1100 <= float(hu.min()) <= -900 and 300 <= float(hu.max()) <= 3100):
        problems.append(f"CT HU range {hu.min()}..{hu.max()} is not that of a pelvis CT")
    ct = Grid(tuple(img.GetOrigin()), tuple(img.GetSpacing()), tuple(hu.shape))  # type: ignore[arg-type]
    rs = next(case_dir.glob("RS.*.dcm"))
    rt = RTStructBuilder.create_from(str(case_dir / "CT"), str(rs))
    names = side["structure_names"]
    dose, dgrid, _ = read_rtdose(next(case_dir.glob("RD.*.dcm")))

    def on_ct(canon: str) -> np.ndarray:
        m = rt.get_roi_mask_by_name(names[canon]).transpose(2, 0, 1)  # rt-utils: [row, col, slice]
        idx = np.argwhere(m)
        pts = np.stack([ct.xs[idx[:, 2]], ct.ys[idx[:, 1]], ct.zs[idx[:, 0]]], axis=-1)
        return ndimage.map_coordinates(dose, dgrid.world_to_index(pts).T, order=1, mode="nearest")

    d70, d56 = on_ct("PTV70"), on_ct("PTV56")
    metrics = {
        "PTV70_D95": float(np.percentile(d70, 5)),
        "PTV70_Dmax": float(d70.max()),
        "PTV56_D95": float(np.percentile(d56, 5)),
    }
    if abs(metrics["PTV70_D95"] - 70.0) > 0.7:
        problems.append(f"PTV70 D95 {metrics['PTV70_D95']:.2f} Gy is not 70 Gy within 1 %")
    if metrics["PTV70_Dmax"] > 1.07 * 70.0:
        problems.append(f"PTV70 Dmax {metrics['PTV70_Dmax']:.2f} Gy exceeds 107 %")
    if metrics["PTV56_D95"] < 0.95 * 56.0:
        problems.append(f"PTV56 D95 {metrics['PTV56_D95']:.2f} Gy is under 95 % of 56 Gy")
    plan = pydicom.dcmread(str(next(case_dir.glob("RP.*.dcm"))))
    fx = int(plan.FractionGroupSequence[0].NumberOfFractionsPlanned)
    if fx != 28:
        problems.append(f"RTPLAN has {fx} fractions, expected 28")
    return {"case_id": side["case_id"], "ok": not problems, "problems": problems, **metrics}


def check_cohort(cohort_dir: str | Path) -> list[dict[str, Any]]:
    """Check every case folder of a cohort; a case that cannot be read is a failed check."""
    out = []
    for case in sorted(p for p in Path(cohort_dir).iterdir() if (p / SIDECAR).exists()):
        try:
            out.append(check_case(case))
        except Exception as exc:  # report and go on with the other cases
            out.append({"case_id": case.name, "ok": False, "problems": [f"{type(exc).__name__}: {exc}"]})
    return out
