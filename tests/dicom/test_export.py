"""Export of a predicted dose as RTDOSE: geometry, references, privacy, DVH after reading back."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pydicom
import pytest

from vmat_monai.cli import main
from vmat_monai.dicom.export import nifti_dose_on_grid
from vmat_monai.dicom.readers import discover, read_ct, read_rtdose, read_rtdose_on
from vmat_monai.metrics.dvh import dvh_statistics


def _source(tiny_cohort, case_dir):
    """The DICOM study a converted case came from (via the same hash the converter stores)."""
    import hashlib

    info = json.loads((case_dir / "case.json").read_text())
    for c in discover(tiny_cohort)[0]:
        if hashlib.sha256(f"{c.patient_id}|{c.study_uid}".encode()).hexdigest()[:16] == info["source_hash"]:
            return c
    raise AssertionError("source not found")


def test_exported_rtdose_reproduces_the_nifti_and_references_the_source(tiny_cohort, converted, tmp_path, dicompyler):
    import SimpleITK as sitk

    out, _ = converted
    case_dir = sorted(p.parent for p in out.glob("*/case.json"))[0]
    rd = tmp_path / "RD.pred.dcm"
    assert main(["export-rtdose", "--pred", str(case_dir / "dose.nii.gz"), "--case", str(case_dir),
                 "--dicom", str(tiny_cohort), "--out", str(rd)]) == 0  # fmt: skip
    src = _source(tiny_cohort, case_dir)
    ds = pydicom.dcmread(str(rd))
    ct0 = pydicom.dcmread(str(next(iter(src.ct.values()))[0]))
    plan = pydicom.dcmread(str(src.rtplan[0]))
    assert ds.StudyInstanceUID == ct0.StudyInstanceUID and ds.FrameOfReferenceUID == ct0.FrameOfReferenceUID
    assert ds.ReferencedRTPlanSequence[0].ReferencedSOPInstanceUID == plan.SOPInstanceUID
    assert ds.PatientID == case_dir.name and ds.PatientName == case_dir.name  # no identifiers by default
    nifti, grid = nifti_dose_on_grid(case_dir / "dose.nii.gz")
    # pydicom: same grid, dose within the 32-bit quantisation
    dose, rgrid, _ = read_rtdose(rd)
    assert np.allclose(rgrid.origin, grid.origin, atol=1e-3) and np.allclose(rgrid.spacing, grid.spacing)
    np.testing.assert_allclose(dose, nifti, atol=1e-6 * nifti.max())
    # our DICOM reader resamples it onto the CT unchanged
    ct = read_ct(next(iter(src.ct.values())))
    on_ct, _ = read_rtdose_on([rd], ct)
    np.testing.assert_allclose(on_ct, nifti, atol=1e-4)
    # SimpleITK (GDCM) finds the same geometry; its raw pixels times the DoseGridScaling it reports
    # give DVHs within 0.5 % of the NIfTI's
    img = sitk.ReadImage(str(rd))
    assert np.allclose(img.GetOrigin(), grid.origin, atol=1e-3) and np.allclose(img.GetSpacing(), grid.spacing)
    arr = sitk.GetArrayFromImage(img).astype(np.float64) * float(img.GetMetaData("3004|000e"))
    masks = np.asarray(__import__("nibabel").load(str(case_dir / "masks.nii.gz")).dataobj).transpose(3, 2, 1, 0) > 0
    for m in masks:
        if m.any():
            a = dvh_statistics(nifti, m, grid.voxel_volume_cc, ("D95", "D50", "Dmean"))
            b = dvh_statistics(arr, m, grid.voxel_volume_cc, ("D95", "D50", "Dmean"))
            for k in a:
                assert b[k] == pytest.approx(a[k], rel=0.005, abs=1e-3)
    # dicompyler-core loads it and sees the same dose grid
    dicomparser, _ = dicompyler
    dg = dicomparser.DicomParser(str(rd)).GetDoseData()
    assert dg["dosegridscaling"] == pytest.approx(float(ds.DoseGridScaling))
    assert dg["dosemax"] * dg["dosegridscaling"] == pytest.approx(nifti.max(), rel=1e-6)


def test_export_without_source_warns_and_refuses_a_foreign_study(converted, tiny_cohort, tmp_path, capsys):
    out, _ = converted
    a, b = sorted(p.parent for p in out.glob("*/case.json"))
    assert main(["export-rtdose", "--pred", str(a / "dose.nii.gz"), "--out", str(tmp_path / "x.dcm")]) == 0
    assert "will not register" in capsys.readouterr().err
    # a DICOM folder that holds only the other patient: refused, nothing written
    other = tmp_path / "other"
    shutil.copytree(_source(tiny_cohort, b).folder, other)
    rc = main(["export-rtdose", "--pred", str(a / "dose.nii.gz"), "--case", str(a), "--dicom", str(other),
               "--out", str(tmp_path / "y.dcm")])  # fmt: skip
    assert rc == 2 and "is the source of this case" in capsys.readouterr().err
    assert not (tmp_path / "y.dcm").exists()
