"""Reading the beam arrangement of an RTPLAN for the beam dose prior, and refusing what it cannot use."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from vmat_monai.dicom.common import StudyInfo
from vmat_monai.dicom.plan_reading import read_beams
from vmat_monai.dicom.readers import DicomInputError
from vmat_monai.dicom.rtplan import PlanTarget, write_rtplan

STUDY = StudyInfo("TEST^X", "X", "1.2.3.4", "1.2.3.4.5")


@pytest.fixture()
def plan(tmp_path):
    path = tmp_path / "RP.dcm"
    write_rtplan(path, STUDY, "1.2.3.9", "1.2.3.9.1", "1.2.3.8.1", [PlanTarget(1, "PTV70", 70.0)], [], 35, [0, 0, 0])
    return path


def _edit(path, change):
    ds = pydicom.dcmread(str(path))
    change(ds)
    ds.save_as(str(path))
    return path


def test_two_full_arcs_of_our_plans(plan):
    arr = read_beams(plan)
    assert arr.source == "rtplan" and arr.patient_position == "HFS" and arr.coplanar and not arr.notes
    (cw, cc) = arr.beams
    assert (cw.start_deg, cw.stop_deg, cw.direction) == (181.0, 179.0, "CW")
    assert (cc.start_deg, cc.stop_deg, cc.direction) == (179.0, 181.0, "CC")
    assert cw.weight == cc.weight > 0  # from the fraction group's meterset
    angles, weights = arr.weighted_angles(5.0)
    assert angles.size == 144 and weights.sum() == pytest.approx(1.0)
    assert "2 arcs" in arr.describe()


def test_static_fields_couch_and_position(plan):
    def static(ds):
        for b, g in zip(ds.BeamSequence, (40.0, 320.0), strict=True):
            b.BeamType = "STATIC"
            b.ControlPointSequence[0].GantryAngle = g
            b.ControlPointSequence[0].GantryRotationDirection = "NONE"
            for cp in b.ControlPointSequence[1:]:
                del cp.GantryAngle
        ds.BeamSequence[1].ControlPointSequence[0].PatientSupportAngle = "10"
        ds.PatientSetupSequence[0].PatientPosition = "FFS"

    arr = read_beams(_edit(plan, static))
    assert [(b.start_deg, b.stop_deg, b.direction) for b in arr.beams] == [(40, 40, "NONE"), (320, 320, "NONE")]
    assert not arr.coplanar and "couch angle 10" in arr.notes[0]
    assert arr.patient_position == "FFS"
    assert sorted(arr.weighted_angles()[0].tolist()) == [40.0, 320.0]  # mirrored: the same pair for FFS
    np.testing.assert_allclose(arr.weighted_angles()[1], [0.5, 0.5])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda ds: setattr(ds.BeamSequence[0], "RadiationType", "ELECTRON"), "ELECTRON; the beam dose prior"),
        (lambda ds: delattr(ds.BeamSequence[1], "ControlPointSequence"), "has no control points"),
        (lambda ds: setattr(ds.PatientSetupSequence[0], "PatientPosition", "HFP"), "patient position HFP"),
        (lambda ds: delattr(ds, "BeamSequence"), "no treatment beam"),
    ],
)
def test_what_the_prior_cannot_use_is_refused_with_the_file_named(plan, change, message):
    with pytest.raises(DicomInputError, match=message) as err:
        read_beams(_edit(plan, change))
    assert str(plan) in str(err.value)
