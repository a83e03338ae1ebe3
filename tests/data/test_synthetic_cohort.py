"""The synthetic cohort read back from its DICOM files by pydicom, SimpleITK, rt-utils and dicompyler-core."""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest
from scipy import ndimage

from vmat_monai.data.synthetic.check import check_case
from vmat_monai.data.synthetic.cohort import SIDECAR, CohortSettings, generate_case
from vmat_monai.data.synthetic.naming import HELPER_NAMES, NAME_VARIANTS
from vmat_monai.dicom.readers import read_rtdose
from vmat_monai.geometry import Grid


def _cases(cohort):
    return sorted(p for p in cohort.iterdir() if (p / SIDECAR).exists())


def _sidecar(case):
    return json.loads((case / SIDECAR).read_text())


def test_manifest_and_case_layout(tiny_cohort):
    manifest = json.loads((tiny_cohort / "cohort.json").read_text())
    assert [c["case_id"] for c in manifest["cases"]] == ["SYN0001", "SYN0002"]
    assert manifest["failed"] == {}
    for case in _cases(tiny_cohort):
        assert len(list((case / "CT").glob("*.dcm"))) == CohortSettings.tiny().n_slices
        assert (
            len(list(case.glob("RS.*.dcm")))
            == len(list(case.glob("RP.*.dcm")))
            == len(list(case.glob("RD.*.dcm")))
            == 1
        )
    assert not list(tiny_cohort.glob(".tmp-*")), "temporary folders must not survive"


def test_ct_series_reads_in_simpleitk_with_realistic_hu(tiny_cohort):
    import SimpleITK as sitk

    s = CohortSettings.tiny()
    for case in _cases(tiny_cohort):
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(case / "CT")))
        img = reader.Execute()
        assert img.GetSize() == (s.matrix, s.matrix, s.n_slices)
        np.testing.assert_allclose(img.GetSpacing(), (s.fov_mm / s.matrix, s.fov_mm / s.matrix, s.slice_mm), rtol=1e-5)
        np.testing.assert_allclose(img.GetDirection(), np.eye(3).ravel())
        hu = sitk.GetArrayFromImage(img)
        assert hu.min() <= -950  # air
        assert (hu > 600).sum() > 100  # cortical bone
        centre = hu[:, s.matrix // 2 - 5 : s.matrix // 2 + 5, s.matrix // 2 - 5 : s.matrix // 2 + 5]
        assert -150 < np.median(centre) < 100  # soft tissue / fat in the pelvis


def test_uids_and_references_are_consistent(tiny_cohort):
    for case in _cases(tiny_cohort):
        cts = [pydicom.dcmread(str(p), stop_before_pixels=True) for p in sorted((case / "CT").glob("*.dcm"))]
        rs = pydicom.dcmread(str(next(case.glob("RS.*.dcm"))))
        rp = pydicom.dcmread(str(next(case.glob("RP.*.dcm"))))
        rd = pydicom.dcmread(str(next(case.glob("RD.*.dcm"))), stop_before_pixels=True)
        study = {d.StudyInstanceUID for d in [*cts, rs, rp, rd]}
        frame = {d.FrameOfReferenceUID for d in [*cts, rp, rd]}
        frame.add(rs.ReferencedFrameOfReferenceSequence[0].FrameOfReferenceUID)
        assert len(study) == 1 and len(frame) == 1
        assert len({d.SeriesInstanceUID for d in cts}) == 1
        ct_sops = {d.SOPInstanceUID for d in cts}
        refd = rs.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0].RTReferencedSeriesSequence[0]
        assert {c.ReferencedSOPInstanceUID for c in refd.ContourImageSequence} == ct_sops
        assert rd.ReferencedRTPlanSequence[0].ReferencedSOPInstanceUID == rp.SOPInstanceUID
        assert rp.ReferencedStructureSetSequence[0].ReferencedSOPInstanceUID == rs.SOPInstanceUID
        assert rd.DoseUnits == "GY" and rd.DoseType == "PHYSICAL"
        assert "PatientBirthDate" not in rd or rd.PatientBirthDate == ""


def test_structure_names_are_real_world_variants(tiny_cohort):
    from rt_utils import RTStructBuilder

    for case in _cases(tiny_cohort):
        side = _sidecar(case)
        rt = RTStructBuilder.create_from(str(case / "CT"), str(next(case.glob("RS.*.dcm"))))
        names = set(rt.get_roi_names())
        for canon, written in side["structure_names"].items():
            assert written in NAME_VARIANTS[canon]
            assert written in names
            assert rt.get_roi_mask_by_name(written).any()
        for kind, written in side["helper_names"].items():
            assert written in HELPER_NAMES[kind] and written in names
        assert 2 <= len(side["helper_names"]) <= 4


def test_plan_prescription_and_goals_read_back(tiny_cohort):
    for case in _cases(tiny_cohort):
        side = _sidecar(case)
        rp = pydicom.dcmread(str(next(case.glob("RP.*.dcm"))))
        assert rp.FractionGroupSequence[0].NumberOfFractionsPlanned == 28
        assert len(rp.BeamSequence) == 2
        assert {b.BeamType for b in rp.BeamSequence} == {"DYNAMIC"}
        targets = {float(d.TargetPrescriptionDose) for d in rp.DoseReferenceSequence if d.DoseReferenceType == "TARGET"}
        assert targets == {70.0, 56.0}
        oar = [d for d in rp.DoseReferenceSequence if d.DoseReferenceType == "ORGAN_AT_RISK"]
        by_dose = [
            (float(d.OrganAtRiskMaximumDose), round(float(d.OrganAtRiskOverdoseVolumeFraction), 4))
            for d in oar
            if "OrganAtRiskOverdoseVolumeFraction" in d
        ]
        g = side["goals_in_plan"]
        assert (50.0, round(g["rectum_V50"], 4)) in by_dose
        assert (75.0, round(g["bladder_V75"], 4)) in by_dose
        limits = [float(d.OrganAtRiskLimitDose) for d in oar if "OrganAtRiskLimitDose" in d]
        assert pytest.approx(g["rectum_Dmax"]) in limits


def test_dose_properties_with_an_independent_dvh_calculator(tiny_cohort, dicompyler):
    dicomparser, dvhcalc = dicompyler
    for case in _cases(tiny_cohort):
        side = _sidecar(case)
        rs_path, rd_path = str(next(case.glob("RS.*.dcm"))), str(next(case.glob("RD.*.dcm")))
        rois = {s["name"]: k for k, s in dicomparser.DicomParser(rs_path).GetStructures().items()}
        names = side["structure_names"]
        ptv70 = dvhcalc.get_dvh(rs_path, rd_path, rois[names["PTV70"]])
        ptv56 = dvhcalc.get_dvh(rs_path, rd_path, rois[names["PTV56"]])
        assert ptv70.D95.value == pytest.approx(70.0, rel=0.01)
        assert ptv70.max <= 1.07 * 70.0 + 0.1
        assert ptv56.D95.value >= 0.95 * 56.0
        rectum = dvhcalc.get_dvh(rs_path, rd_path, rois[names["Rectum"]])
        assert 5.0 < rectum.mean < 60.0  # spared, yet near the target


def test_dose_is_zero_outside_body_and_conforms_to_ptv70(tiny_cohort):
    from rt_utils import RTStructBuilder

    for case in _cases(tiny_cohort):
        side = _sidecar(case)
        dose, dgrid, _ = read_rtdose(next(case.glob("RD.*.dcm")))
        rt = RTStructBuilder.create_from(str(case / "CT"), str(next(case.glob("RS.*.dcm"))))
        ct = Grid(*(tuple(side["ct_grid"][k]) for k in ("origin", "spacing", "shape")))

        def on_dose_grid(name, rt=rt, ct=ct, dgrid=dgrid):
            m = rt.get_roi_mask_by_name(name).transpose(2, 0, 1).astype(np.float32)
            z, y, x = np.meshgrid(dgrid.zs, dgrid.ys, dgrid.xs, indexing="ij")
            idx = ct.world_to_index(np.stack([x, y, z], -1))
            return ndimage.map_coordinates(m, np.moveaxis(idx, -1, 0), order=1, mode="constant") > 0.5

        body = on_dose_grid(side["structure_names"]["BODY"])
        far_outside = ~ndimage.binary_dilation(body, iterations=2)
        assert dose[far_outside].max() < 1e-3
        ptv70 = on_dose_grid(side["structure_names"]["PTV70"])
        high = dose >= 70.0
        near_ptv = ndimage.binary_dilation(ptv70, iterations=2)  # 2 voxels of the dose grid
        assert high.sum() > 0.5 * ptv70.sum()
        assert (high & near_ptv).sum() / high.sum() > 0.90
        # the dose grid is offset from the CT grid, as in clinical exports
        offset = (np.array(dgrid.origin) - np.array(ct.origin)) / np.array(ct.spacing)
        assert np.abs(offset - np.round(offset)).max() > 0.01


def test_check_case_passes_from_files(tiny_cohort):
    for case in _cases(tiny_cohort):
        report = check_case(case)
        assert report["ok"], report["problems"]


def test_same_seed_same_case_and_goal_response(tmp_path, dicompyler):
    """Deterministic per seed; a tighter rectum goal lowers the rectum dose of the same anatomy."""
    dicomparser, dvhcalc = dicompyler
    s = CohortSettings.tiny()
    a = generate_case(3, 11, tmp_path / "a", s)
    b = generate_case(3, 11, tmp_path / "b", s)
    a.pop("seconds"), b.pop("seconds")
    assert a == b
    ra = pydicom.dcmread(str(tmp_path / "a" / "SYN0003" / "RD.SYN0003.dcm"))
    rb = pydicom.dcmread(str(tmp_path / "b" / "SYN0003" / "RD.SYN0003.dcm"))
    assert ra.PixelData == rb.PixelData
    loose = {"rectum_V50": 0.60, "rectum_V60": 0.42, "rectum_V70": 0.25, "rectum_Dmax": 76.0}
    tight = {"rectum_V50": 0.35, "rectum_V60": 0.22, "rectum_V70": 0.12, "rectum_Dmax": 73.0}
    means = {}
    for label, goals in (("loose", loose), ("tight", tight)):
        summ = generate_case(3, 11, tmp_path / label, s, goals=goals)
        case = tmp_path / label / "SYN0003"
        rs_path, rd_path = str(case / "RS.SYN0003.dcm"), str(case / "RD.SYN0003.dcm")
        rois = {v["name"]: k for k, v in dicomparser.DicomParser(rs_path).GetStructures().items()}
        means[label] = dvhcalc.get_dvh(rs_path, rd_path, rois[summ["structure_names"]["Rectum"]]).mean
    assert means["tight"] < means["loose"] - 1.0


def test_dose_model_output_is_never_negative():
    """Round-off in the blurs once left -4e-22 Gy voxels that the RTDOSE writer (rightly) refused."""
    from vmat_monai.data.synthetic.dose_model import _Components

    rng = np.random.default_rng(0)
    primary = rng.uniform(0, 1, size=(3, 6, 8, 10)).astype(np.float32)
    primary[:, :, :, :5] = 0.0
    scatter = rng.uniform(0, 1e-3, size=(3, 3, 4, 5)).astype(np.float32)
    scatter[:, :, :, :2] = -1e-22  # the round-off that the Gaussian blurs leave at the field edge
    comp = _Components(primary, scatter, np.ones((6, 8, 10), np.float32), ["a", "b", "c"])
    w = np.array([1.0, 2.0, 0.5])
    dose = comp.combine(w)
    assert dose.min() >= 0.0 and (dose == 0).any()
    np.testing.assert_allclose(np.maximum(comp.at(np.arange(dose.size)) @ w, 0), dose.ravel(), atol=1e-6)


def test_plans_per_patient_share_the_anatomy_with_contrasting_goals(tmp_path):
    from dataclasses import replace

    from vmat_monai.data.case_folder import make_datalist
    from vmat_monai.data.synthetic.cohort_runner import generate_cohort
    from vmat_monai.data.synthetic.goals import tightness_positions

    settings = replace(CohortSettings.tiny(), plans_per_patient=2)
    manifest = generate_cohort(tmp_path / "c", 4, seed=1, settings=settings)
    assert not manifest["failed"]
    sides = [json.loads((tmp_path / "c" / f"SYN000{i}" / SIDECAR).read_text()) for i in (1, 2, 3, 4)]
    assert [s["patient"] for s in sides] == [1, 1, 2, 2] and [s["plan_variant"] for s in sides] == [0, 1, 0, 1]
    assert sides[0]["anatomy"] == sides[1]["anatomy"] and sides[0]["anatomy"] != sides[2]["anatomy"]
    # the second plan's rectum and bladder goals lie half their tightness range away
    for a, b in ((sides[0], sides[1]), (sides[2], sides[3])):
        pa, pb = (tightness_positions(s["goals_drawn"]) for s in (a, b))
        for organ in ("Rectum", "Bladder"):
            assert abs(pa[organ] - pb[organ]) == pytest.approx(0.5, abs=0.01)
    ct = [[pydicom.dcmread(str(p)) for p in sorted((tmp_path / "c" / f"SYN000{i}" / "CT").iterdir())] for i in (1, 2)]
    assert ct[0][0].PatientID == ct[1][0].PatientID == "SYNP0001"
    assert ct[0][0].StudyInstanceUID != ct[1][0].StudyInstanceUID
    assert all(np.array_equal(a.pixel_array, b.pixel_array) for a, b in zip(*ct, strict=True))
    # the tighter rectum goal gives the lower rectum dose on the same anatomy
    tight, loose = sorted(sides[:2], key=lambda s: s["goals_drawn"]["rectum_V50"])
    assert tight["achieved"]["Rectum_Dmean"] < loose["achieved"]["Rectum_Dmean"]
    # converted: one patient's plans never straddle splits
    from vmat_monai.data.convert import ConvertOptions
    from vmat_monai.data.convert_tree import convert_tree

    convert_tree(tmp_path / "c", tmp_path / "d", ConvertOptions())
    dl = make_datalist(tmp_path / "d", split=(0.5, 0.25, 0.25))
    info = {p.parent.name: json.loads(p.read_text()) for p in (tmp_path / "d").glob("*/case.json")}
    where = {}
    for split in ("training", "validation", "test"):
        for e in dl[split]:
            where.setdefault(info[e["case_id"]]["patient_hash"], set()).add(split)
    assert len(where) == 2 and all(len(v) == 1 for v in where.values())
