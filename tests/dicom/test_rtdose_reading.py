"""RTDOSE reading and resampling onto the CT grid against analytic answers."""

from __future__ import annotations

import numpy as np
import pytest

from vmat_monai.dicom.common import StudyInfo
from vmat_monai.dicom.readers import CTVolume, DicomInputError, read_rtdose, read_rtdose_on
from vmat_monai.dicom.rtdose import write_rtdose
from vmat_monai.geometry import Grid

STUDY = StudyInfo("TEST^X", "X", "1.2.3.4", "1.2.3.4.5")
DOSE_GRID = Grid((-30.3, -20.7, -15.9), (2.5, 2.5, 3.0), (12, 18, 26))  # offset from the CT grid
CT_GRID = Grid((-40.0, -30.0, -20.0), (1.7, 1.7, 2.0), (20, 36, 48))


def ramp(x, y, z):
    """A linear dose field, Gy: trilinear interpolation reproduces it exactly."""
    return 40.0 + 0.3 * x - 0.2 * y + 0.5 * z


def _write(tmp_path, name, dose, summation="PLAN"):
    return write_rtdose(dose, DOSE_GRID, tmp_path / name, STUDY, "1.2.3.9", f"1.2.3.9.{len(name)}", summation=summation)


def _ct():
    return CTVolume(np.zeros(CT_GRID.shape, np.float32), CT_GRID, [], "1.2.3.8", STUDY.frame_uid, [])


def _field(grid):
    z, y, x = np.meshgrid(grid.zs, grid.ys, grid.xs, indexing="ij")
    return ramp(x, y, z)


def test_round_trip_of_the_written_dose(tmp_path):
    dose = _field(DOSE_GRID)
    d, grid, ds = read_rtdose(_write(tmp_path, "RD.dcm", dose))
    assert grid == DOSE_GRID
    np.testing.assert_allclose(d, dose, atol=dose.max() * 1e-8)
    assert ds.DoseUnits == "GY"


def test_resampling_is_exact_for_a_linear_field_and_zero_outside(tmp_path):
    dose_on_ct, info = read_rtdose_on([_write(tmp_path, "RD.dcm", _field(DOSE_GRID))], _ct())
    truth = _field(CT_GRID)
    z, y, x = np.meshgrid(CT_GRID.zs, CT_GRID.ys, CT_GRID.xs, indexing="ij")
    lo, hi = (
        np.array(DOSE_GRID.origin),
        np.array(DOSE_GRID.origin) + np.array(DOSE_GRID.spacing) * (np.array(DOSE_GRID.shape[::-1]) - 1),
    )
    inside = (x >= lo[0]) & (x <= hi[0]) & (y >= lo[1]) & (y <= hi[1]) & (z >= lo[2]) & (z <= hi[2])
    far = (x < lo[0] - 3) | (x > hi[0] + 3) | (y < lo[1] - 3) | (y > hi[1] + 3) | (z < lo[2] - 3) | (z > hi[2] + 3)
    assert inside.sum() > 1000 and far.sum() > 1000
    np.testing.assert_allclose(dose_on_ct[inside], truth[inside], atol=1e-3)
    assert np.all(dose_on_ct[far] == 0)
    assert info["summation"] == "PLAN"


def test_per_beam_doses_are_summed_and_a_plan_dose_wins(tmp_path):
    f = _field(DOSE_GRID)
    beams = [_write(tmp_path, "RD.b1.dcm", 0.25 * f, "BEAM"), _write(tmp_path, "RD.b2.dcm", 0.75 * f, "BEAM")]
    summed, info = read_rtdose_on(beams, _ct())
    single, _ = read_rtdose_on([_write(tmp_path, "RD.plan.dcm", f)], _ct())
    np.testing.assert_allclose(summed, single, atol=1e-3)
    assert info["summation"].startswith("sum of")
    with_plan, info = read_rtdose_on([*beams, tmp_path / "RD.plan.dcm"], _ct())
    np.testing.assert_allclose(with_plan, single, atol=1e-6)
    assert info["summation"] == "PLAN"


def test_relative_dose_and_other_frames_are_refused(tmp_path):
    import pydicom

    path = _write(tmp_path, "RD.dcm", _field(DOSE_GRID))
    ds = pydicom.dcmread(str(path))
    ds.DoseUnits = "RELATIVE"
    ds.save_as(str(tmp_path / "rel.dcm"))
    with pytest.raises(DicomInputError, match="relative dose"):
        read_rtdose(tmp_path / "rel.dcm")
    ds.DoseUnits = "GY"
    ds.FrameOfReferenceUID = "1.2.3.999"
    ds.save_as(str(tmp_path / "frame.dcm"))
    with pytest.raises(DicomInputError, match="frame of reference"):
        read_rtdose_on([tmp_path / "frame.dcm"], _ct())


def test_monai_loadimage_reads_rtdose_in_gy_with_the_right_geometry(tmp_path):
    from monai.transforms import EnsureChannelFirstd, LoadImaged, Orientationd

    from vmat_monai.dicom.monai_readers import RTDoseReader

    path = _write(tmp_path, "RD.dcm", _field(DOSE_GRID))
    assert RTDoseReader().verify_suffix(path)
    d = LoadImaged("dose", reader=RTDoseReader())({"dose": str(path)})
    d = Orientationd("dose", "RAS")(EnsureChannelFirstd("dose")(d))
    img = d["dose"]
    assert img.shape == (1, *DOSE_GRID.shape[::-1])
    affine = np.asarray(img.affine)
    rng = np.random.default_rng(0)
    for ijk in rng.integers(0, DOSE_GRID.shape[::-1], size=(20, 3)):
        r, a, s = (affine @ np.array([*ijk, 1.0]))[:3]
        # RAS -> LPS: x = -R, y = -A
        assert float(img[0][tuple(ijk)]) == pytest.approx(ramp(-r, -a, s), abs=1e-4)
    ct_file = tmp_path / "not_dose.dcm"
    ct_file.write_bytes(b"not dicom")
    assert not RTDoseReader().verify_suffix(ct_file)


@pytest.mark.parametrize("scaling", ["NaN", "inf"])
def test_non_finite_dose_is_refused_with_the_file_named(tmp_path, scaling):
    import pydicom

    path = _write(tmp_path, "RD.dcm", _field(DOSE_GRID))
    ds = pydicom.dcmread(str(path))
    ds.DoseGridScaling = scaling
    ds.save_as(str(path))
    with pytest.raises(DicomInputError, match=r"RD\.dcm.*NaN/inf"):
        read_rtdose(path)


def test_non_finite_ct_is_refused_with_the_series_named(tmp_path):
    import pydicom

    from vmat_monai.dicom.ct import write_ct_series
    from vmat_monai.dicom.readers import read_ct

    hu = np.zeros((3, 8, 8), np.float32)
    write_ct_series(hu, Grid((0.0, 0.0, 0.0), (1.0, 1.0, 2.0), hu.shape), tmp_path / "CT", STUDY, "1.2.3.8")
    files = sorted((tmp_path / "CT").iterdir())
    ds = pydicom.dcmread(str(files[1]))
    ds.RescaleSlope = "inf"
    ds.save_as(str(files[1]))
    with pytest.raises(DicomInputError, match=r"CT series in .*CT: CT contains NaN/inf"):
        read_ct(files)
