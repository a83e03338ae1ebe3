"""Reading an RTPLAN: prescriptions, fractions and clinical goals (:func:`read_plan`), and the beam
arrangement for the beam dose prior (:func:`read_beams`). Both take the dataset :func:`load_rtplan`
read, so the file is read once; every error is a :class:`DicomInputError` naming the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset

from vmat_monai.dicom.readers import DicomInputError
from vmat_monai.transforms.beam_arrangement import POSITIONS, Beam, BeamArrangement

__all__ = ["PlanInfo", "load_rtplan", "read_beams", "read_plan"]

_DESC_VX = re.compile(r"V\s*(\d+(?:\.\d+)?)\s*Gy\s*(?:<=|<)\s*(\d+(?:\.\d+)?)\s*(%|cc)", re.IGNORECASE)
_DESC_DMAX = re.compile(r"D\s*max\s*(?:<=|<)\s*(\d+(?:\.\d+)?)\s*Gy", re.IGNORECASE)


@dataclass
class PlanInfo:
    """What the converter takes from an RTPLAN."""

    prescriptions: dict[int, float]  # target ROI number -> dose, Gy
    fractions: int | None
    goals: list[dict[str, Any]]  # roi_number, kind, dose_gy, limit (natural)
    label: str


def load_rtplan(path: Path) -> Dataset:
    """The RTPLAN dataset (DicomInputError naming the file when it cannot be read)."""
    try:
        return pydicom.dcmread(str(path))
    except Exception as exc:
        raise DicomInputError(f"{path}: unreadable RTPLAN ({exc}); re-export it") from None


def read_plan(path: Path, ds: Dataset | None = None) -> PlanInfo:
    """Prescriptions, fractions and clinical goals of an RTPLAN (see vmat_monai.dicom.rtplan);
    ``ds``: the file's dataset when already read (:func:`load_rtplan`)."""
    ds = ds if ds is not None else load_rtplan(path)
    presc: dict[int, float] = {}
    goals: list[dict[str, Any]] = []
    for it in ds.get("DoseReferenceSequence", []):
        typ = str(it.get("DoseReferenceType", "")).upper()
        roi = int(it.get("ReferencedROINumber", -1))
        if typ == "TARGET" and "TargetPrescriptionDose" in it:
            presc[roi] = float(it.TargetPrescriptionDose)
        elif typ == "ORGAN_AT_RISK":
            desc = str(it.get("DoseReferenceDescription", ""))
            if "OrganAtRiskLimitDose" in it:
                goals.append(
                    {"roi_number": roi, "kind": "dmax", "dose_gy": float(it.OrganAtRiskLimitDose), "limit": 0.0}
                )
            elif "OrganAtRiskMaximumDose" in it and "OrganAtRiskOverdoseVolumeFraction" in it:
                goals.append(
                    {
                        "roi_number": roi,
                        "kind": "vx",
                        "dose_gy": float(it.OrganAtRiskMaximumDose),
                        "limit": float(it.OrganAtRiskOverdoseVolumeFraction),
                    }
                )
            elif m := _DESC_VX.search(desc):
                val = float(m.group(2))
                kind = "vx_cc" if m.group(3).lower() == "cc" else "vx"
                goals.append(
                    {
                        "roi_number": roi,
                        "kind": kind,
                        "dose_gy": float(m.group(1)),
                        "limit": val if kind == "vx_cc" else val / 100,
                    }
                )
            elif m := _DESC_DMAX.search(desc):
                goals.append({"roi_number": roi, "kind": "dmax", "dose_gy": float(m.group(1)), "limit": 0.0})
    fx = None
    if ds.get("FractionGroupSequence"):
        n = ds.FractionGroupSequence[0].get("NumberOfFractionsPlanned")
        fx = int(n) if n is not None else None
    return PlanInfo(presc, fx, goals, str(ds.get("RTPlanLabel", "")))


def read_beams(path: Path, ds: Dataset | None = None) -> BeamArrangement:
    """The beam arrangement of an RTPLAN for the beam dose prior (vmat_monai.transforms.beam_arrangement);
    ``ds``: the file's dataset when already read (:func:`load_rtplan`).

    Treatment beams of ``BeamSequence`` (setup fields skipped): the first control point's gantry
    angle, rotation direction and couch angle, the last control point's gantry angle (an arc's
    stop), and the beam's meterset from the fraction group as its weight (1 each when absent).
    Non-coplanar beams (couch angle not 0) are kept and named in ``notes`` (the prior computes
    them coplanar).

    Raises:
        DicomInputError: naming the file, for what the prior cannot use: no photon treatment
            beam, an ion or electron plan, a beam without control points, a patient position
            other than HFS/FFS, unreadable angles.
    """
    ds = ds if ds is not None else load_rtplan(path)
    if "IonBeamSequence" in ds and "BeamSequence" not in ds:
        raise DicomInputError(f"{path}: an ion plan (IonBeamSequence); the beam dose prior models photon beams only")
    meterset: dict[int, float] = {}
    for fg in ds.get("FractionGroupSequence", []):
        for rb in fg.get("ReferencedBeamSequence", []):
            if rb.get("BeamMeterset") is not None and rb.get("ReferencedBeamNumber") is not None:
                meterset[int(rb.ReferencedBeamNumber)] = float(rb.BeamMeterset)
    positions = {
        int(s.PatientSetupNumber): str(s.get("PatientPosition", "")) for s in ds.get("PatientSetupSequence", [])
    }
    beams: list[Beam] = []
    notes: list[str] = []
    used_positions: set[str] = set()
    for b in ds.get("BeamSequence", []):
        name = str(b.get("BeamName", b.get("BeamNumber", "?")))
        if str(b.get("TreatmentDeliveryType", "TREATMENT")).upper() != "TREATMENT":
            continue
        rad = str(b.get("RadiationType", "PHOTON")).upper()
        if rad != "PHOTON":
            raise DicomInputError(f"{path}: beam {name!r} is {rad}; the beam dose prior models photon beams only")
        cps = b.get("ControlPointSequence", [])
        if not cps:
            raise DicomInputError(f"{path}: beam {name!r} has no control points; re-export the plan with them")
        try:
            start = float(cps[0].GantryAngle)
            stop = float(next((cp.GantryAngle for cp in reversed(cps) if "GantryAngle" in cp), start))
            direction = str(cps[0].get("GantryRotationDirection", "NONE")).upper() or "NONE"
            couch = float(cps[0].get("PatientSupportAngle", 0.0) or 0.0)
        except (AttributeError, ValueError, TypeError) as exc:
            raise DicomInputError(
                f"{path}: beam {name!r}: unreadable gantry angles ({exc}); re-export the plan"
            ) from None
        direction = direction if direction in ("CW", "CC") else "NONE"
        weight = meterset.get(int(b.get("BeamNumber", -1)), 1.0)
        beam = Beam(start, stop, direction, weight if weight > 0 else 1.0, couch)
        if not beam.coplanar:
            notes.append(f"beam {name!r} couch angle {couch:g} deg: computed coplanar")
        beams.append(beam)
        used_positions.add(positions.get(int(b.get("ReferencedPatientSetupNumber", 1)), "HFS") or "HFS")
    if not beams:
        raise DicomInputError(f"{path}: no treatment beam in BeamSequence; the beam dose prior needs the plan's beams")
    if len(used_positions) > 1:
        raise DicomInputError(f"{path}: beams with different patient positions {sorted(used_positions)}")
    position = used_positions.pop()
    if position not in POSITIONS:
        raise DicomInputError(
            f"{path}: patient position {position}; the beam dose prior supports {POSITIONS} (use a protocol)"
        )
    return BeamArrangement(tuple(beams), "rtplan", position, tuple(notes))
