"""RTPLAN: writing an SIB VMAT plan with its prescription and clinical goals.

Clinical goals are written the standard DICOM way, one ORGAN_AT_RISK item of the
DoseReferenceSequence per goal, referencing the organ's ROI:

* ``V{x}Gy <= f`` (volume fraction): OrganAtRiskMaximumDose = x and
  OrganAtRiskOverdoseVolumeFraction = f;
* ``Dmax <= x``: OrganAtRiskLimitDose = x;
* ``V{x}Gy <= v cc``: only in DoseReferenceDescription (DICOM has no absolute-volume field).

Every item also carries the goal as text in DoseReferenceDescription, e.g.
``Rectum V50Gy <= 50%``, ``Rectum Dmax <= 75Gy``, ``Bowel V45Gy <= 195cc``.
"""

from __future__ import annotations

from collections.abc import Sequence as Seq
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from vmat_monai.dicom.common import (
    RT_PLAN_STORAGE,
    RT_STRUCT_STORAGE,
    StudyInfo,
    new_dataset,
    save_atomic,
    uid_from,
)

__all__ = ["PlanGoal", "PlanTarget", "write_rtplan"]


@dataclass(frozen=True)
class PlanTarget:
    """A prescribed target: ROI number in the RTSTRUCT and total dose, Gy."""

    roi_number: int
    roi_name: str
    dose_gy: float


@dataclass(frozen=True)
class PlanGoal:
    """A clinical goal on an organ at risk.

    Args:
        roi_number: ROI number in the RTSTRUCT.
        roi_name: ROI name as written in the RTSTRUCT.
        kind: ``"vx"`` (fraction), ``"vx_cc"`` (cc) or ``"dmax"``.
        dose_gy: dose level of the goal, Gy (the limit itself for ``dmax``).
        limit: volume fraction (``vx``) or cc (``vx_cc``); unused for ``dmax``.
    """

    roi_number: int
    roi_name: str
    kind: str
    dose_gy: float
    limit: float = 0.0

    def text(self) -> str:
        if self.kind == "dmax":
            return f"{self.roi_name} Dmax <= {self.dose_gy:g}Gy"
        if self.kind == "vx_cc":
            return f"{self.roi_name} V{self.dose_gy:g}Gy <= {self.limit:g}cc"
        return f"{self.roi_name} V{self.dose_gy:g}Gy <= {100 * self.limit:g}%"


def _arc_beam(number: int, name: str, clockwise: bool, iso_mm: Seq[float], meterset: float) -> Dataset:
    b = Dataset()
    b.BeamNumber = number
    b.BeamName = name
    b.BeamType = "DYNAMIC"
    b.RadiationType = "PHOTON"
    b.TreatmentMachineName = "SynthLinac"
    b.PrimaryDosimeterUnit = "MU"
    b.SourceAxisDistance = "1000"
    b.TreatmentDeliveryType = "TREATMENT"
    b.NumberOfWedges = 0
    b.NumberOfCompensators = 0
    b.NumberOfBoli = 0
    b.NumberOfBlocks = 0
    b.FinalCumulativeMetersetWeight = "1"
    start, _stop = (181.0, 179.0) if clockwise else (179.0, 181.0)
    direction = "CW" if clockwise else "CC"
    cps = []
    n_cp = 5
    for i in range(n_cp):
        cp = Dataset()
        cp.ControlPointIndex = i
        cp.CumulativeMetersetWeight = f"{i / (n_cp - 1):.4f}"
        frac = i / (n_cp - 1)
        angle = (start + (358.0 * frac if clockwise else -358.0 * frac)) % 360.0
        cp.GantryAngle = f"{angle:.1f}"
        if i == 0:
            cp.NominalBeamEnergy = "6"
            cp.GantryRotationDirection = direction
            cp.BeamLimitingDeviceAngle = "30" if clockwise else "330"
            cp.PatientSupportAngle = "0"
            cp.IsocenterPosition = [f"{v:.2f}" for v in iso_mm]
        else:
            cp.GantryRotationDirection = direction if i < n_cp - 1 else "NONE"
        cps.append(cp)
    b.NumberOfControlPoints = n_cp
    b.ControlPointSequence = Sequence(cps)
    b.ReferencedPatientSetupNumber = 1
    return b


def write_rtplan(
    path: str | Path,
    study: StudyInfo,
    series_uid: str,
    sop_uid: str,
    struct_sop_uid: str,
    targets: Seq[PlanTarget],
    goals: Seq[PlanGoal],
    fractions: int,
    isocenter_mm: Seq[float],
    label: str = "ProstSIB",
) -> Path:
    """Write an SIB VMAT plan: prescription, clinical goals and two full arcs.

    Args:
        path: output file.
        study: patient/study identity.
        series_uid: SeriesInstanceUID of the plan.
        sop_uid: SOPInstanceUID of the plan.
        struct_sop_uid: the RTSTRUCT the plan references.
        targets: prescribed targets (total dose over all fractions).
        goals: clinical goals on organs at risk.
        fractions: number of fractions.
        isocenter_mm: isocentre (x, y, z) in patient coordinates, mm.
        label: RTPlanLabel.
    """
    ds = new_dataset(RT_PLAN_STORAGE, sop_uid, study, "RTPLAN", series_uid)
    ds.SeriesDescription = "VMAT plan"
    ds.InstanceNumber = 1
    ds.RTPlanLabel = label
    ds.RTPlanName = label
    ds.RTPlanDate = study.study_date
    ds.RTPlanTime = study.study_time
    ds.RTPlanGeometry = "PATIENT"
    ds.ApprovalStatus = "UNAPPROVED"
    ref = Dataset()
    ref.ReferencedSOPClassUID = RT_STRUCT_STORAGE
    ref.ReferencedSOPInstanceUID = struct_sop_uid
    ds.ReferencedStructureSetSequence = Sequence([ref])
    primary = max(targets, key=lambda t: t.dose_gy)
    items = []
    for n, t in enumerate(targets, start=1):
        it = Dataset()
        it.DoseReferenceNumber = n
        it.DoseReferenceUID = uid_from(sop_uid, "doseref", n)
        it.DoseReferenceStructureType = "VOLUME"
        it.DoseReferenceDescription = f"{t.roi_name} {t.dose_gy:g}Gy"
        it.DoseReferenceType = "TARGET"
        it.ReferencedROINumber = t.roi_number
        it.TargetPrescriptionDose = f"{t.dose_gy:g}"
        it.DeliveryMaximumDose = f"{1.07 * t.dose_gy:.2f}"
        items.append(it)
    for n, g in enumerate(goals, start=len(items) + 1):
        it = Dataset()
        it.DoseReferenceNumber = n
        it.DoseReferenceUID = uid_from(sop_uid, "doseref", n)
        it.DoseReferenceStructureType = "VOLUME"
        it.DoseReferenceDescription = g.text()[:64]
        it.DoseReferenceType = "ORGAN_AT_RISK"
        it.ReferencedROINumber = g.roi_number
        if g.kind == "dmax":
            it.OrganAtRiskLimitDose = f"{g.dose_gy:g}"
        elif g.kind == "vx":
            it.OrganAtRiskMaximumDose = f"{g.dose_gy:g}"
            it.OrganAtRiskOverdoseVolumeFraction = f"{g.limit:.4f}"
        items.append(it)
    ds.DoseReferenceSequence = Sequence(items)
    fg = Dataset()
    fg.FractionGroupNumber = 1
    fg.NumberOfFractionsPlanned = int(fractions)
    fg.NumberOfBeams = 2
    fg.NumberOfBrachyApplicationSetups = 0
    mu = float(np.round(primary.dose_gy / fractions * 100 * 2.6, 1))  # typical VMAT modulation
    refs = []
    for num in (1, 2):
        rb = Dataset()
        rb.ReferencedBeamNumber = num
        rb.BeamMeterset = f"{mu / 2:.1f}"
        rb.BeamDose = f"{primary.dose_gy / fractions / 2:.4f}"
        rb.BeamDoseSpecificationPoint = [f"{v:.2f}" for v in isocenter_mm]
        refs.append(rb)
    fg.ReferencedBeamSequence = Sequence(refs)
    ds.FractionGroupSequence = Sequence([fg])
    ds.BeamSequence = Sequence(
        [
            _arc_beam(1, "Arc1_CW", True, isocenter_mm, mu / 2),
            _arc_beam(2, "Arc2_CCW", False, isocenter_mm, mu / 2),
        ]
    )
    setup = Dataset()
    setup.PatientSetupNumber = 1
    setup.PatientPosition = "HFS"
    ds.PatientSetupSequence = Sequence([setup])
    return save_atomic(ds, path)
