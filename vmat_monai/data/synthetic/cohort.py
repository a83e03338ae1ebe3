"""One synthetic prostate SIB VMAT case written as DICOM-RT (CT, RTSTRUCT, RTPLAN, RTDOSE); the
cohort of many (manifest, resume, workers) is :mod:`vmat_monai.data.synthetic.cohort_runner`.

One patient folder per case::

    OUT/SYN0001/CT/CT.0001.dcm ...    axial CT series (HU via RescaleIntercept)
    OUT/SYN0001/RS.SYN0001.dcm         RTSTRUCT (real-world names, helper structures)
    OUT/SYN0001/RP.SYN0001.dcm         RTPLAN (70/56 Gy in 28 fx, goals, two arcs)
    OUT/SYN0001/RD.SYN0001.dcm         RTDOSE (Gy, own 2.5 mm grid, DoseGridScaling)
    OUT/SYN0001/synth_case.json        sidecar: anatomy, goals, names, achieved dose metrics
    OUT/cohort.json                    manifest: settings and one summary per case

A case folder appears under its final name only when complete (written in a temporary
folder, then renamed), so an interrupted run never leaves a case that looks finished.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from vmat_monai.atomic import atomic_dir
from vmat_monai.constraints import ConstraintVector
from vmat_monai.data.synthetic.anatomy import Phantom, helper_masks, rasterise, sample_pelvis
from vmat_monai.data.synthetic.dose_model import DOSE_MODEL_VERSION, ArcModel, compute_plan_dose, hu_to_density
from vmat_monai.data.synthetic.goals import GOAL_SAMPLING_VERSION, sample_goals, tightness_positions
from vmat_monai.data.synthetic.naming import draw_names
from vmat_monai.dicom.common import StudyInfo, uid_from
from vmat_monai.dicom.ct import write_ct_series
from vmat_monai.dicom.rtdose import write_rtdose
from vmat_monai.dicom.rtplan import PlanGoal, PlanTarget, write_rtplan
from vmat_monai.dicom.rtstruct import write_rtstruct
from vmat_monai.geometry import Grid
from vmat_monai.structures import PROSTATE_SIB

__all__ = ["CohortSettings", "generate_case", "plan_inputs"]

SIDECAR = "synth_case.json"
SCHEMA_VERSION = 1
GENERATOR_VERSIONS = {"dose_model_version": DOSE_MODEL_VERSION, "goal_sampling_version": GOAL_SAMPLING_VERSION}
"""What decides a seed's cases besides the settings; recorded in the manifest and every sidecar
(a record without a key was written by version 1 of it)."""


@dataclass(frozen=True)
class CohortSettings:
    """Image sizes of a cohort (identical for every case).

    Args:
        matrix: CT rows = columns.
        fov_mm: CT field of view, mm.
        slice_mm: CT slice spacing and thickness, mm.
        n_slices: number of CT slices (centred on z = 0).
        dose_mm: dose grid spacing, mm (isotropic).
        n_angles: gantry angles of the dose model.
        plans_per_patient: plans per synthetic patient. With 2 or more, consecutive cases share
            one anatomy (same patient ID and CT, separate studies) and differ in their goals:
            every further plan moves the rectum and bladder tightness by half its range, so the
            cohort holds direct contrasts of goals on one anatomy.
    """

    matrix: int = 256
    fov_mm: float = 500.0
    slice_mm: float = 3.0
    n_slices: int = 80
    dose_mm: float = 2.5
    n_angles: int = 36
    plans_per_patient: int = 1

    @classmethod
    def full_size(cls) -> CohortSettings:
        """Clinical size: 512×512 at 0.98 mm, 96 slices of 2.5 mm."""
        return cls(matrix=512, slice_mm=2.5, n_slices=96)

    @classmethod
    def tiny(cls) -> CohortSettings:
        """Small cases for tests: 128×128 at 3.1 mm, 56 slices of 3 mm, 3 mm dose grid."""
        return cls(matrix=128, fov_mm=400.0, n_slices=56, dose_mm=3.0, n_angles=24)

    def ct_grid(self) -> Grid:
        """The CT grid (LPS mm)."""
        sp = self.fov_mm / self.matrix
        z0 = -(self.n_slices - 1) * self.slice_mm / 2
        return Grid(
            (-self.fov_mm / 2 + sp / 2, -self.fov_mm / 2 + sp / 2, z0),
            (sp, sp, self.slice_mm),
            (self.n_slices, self.matrix, self.matrix),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _dose_grid(masks_ct: dict[str, np.ndarray], ct: Grid, rng: np.random.Generator, sp: float) -> Grid:
    """A dose grid of spacing ``sp`` covering the body, offset from the CT grid as planning systems do."""
    body = masks_ct["BODY"]
    zi, yi, xi = (np.nonzero(body.any(axis=a))[0] for a in ((1, 2), (0, 2), (0, 1)))
    lo = np.array([ct.xs[xi[0]], ct.ys[yi[0]], ct.zs[zi[0]]]) - 5.0
    hi = np.array([ct.xs[xi[-1]], ct.ys[yi[-1]], ct.zs[zi[-1]]]) + 5.0
    lo[2], hi[2] = ct.zs[0] + 3.0, ct.zs[-1] - 3.0
    origin = lo + np.array([rng.uniform(0, sp), rng.uniform(0, sp), rng.uniform(0, sp)])
    shape = np.floor((hi - origin) / sp).astype(int) + 1
    return Grid(tuple(float(v) for v in origin), (sp, sp, sp), (int(shape[2]), int(shape[1]), int(shape[0])))


def _sample_on(dose: np.ndarray, dgrid: Grid, ct: Grid, mask: np.ndarray) -> np.ndarray:
    """Dose (trilinear) at the CT voxel centres of ``mask``."""
    idx = np.argwhere(mask)
    pts = np.stack([ct.xs[idx[:, 2]], ct.ys[idx[:, 1]], ct.zs[idx[:, 0]]], axis=-1)
    return ndimage.map_coordinates(dose, dgrid.world_to_index(pts).T, order=1, mode="nearest")


def _metrics(d: dict[str, np.ndarray], voxel_cc: float) -> dict[str, float]:
    out: dict[str, float] = {}
    if "PTV70" in d:
        out.update(
            PTV70_D95=np.percentile(d["PTV70"], 5), PTV70_D2=np.percentile(d["PTV70"], 98), PTV70_Dmax=d["PTV70"].max()
        )
    if "PTV56" in d:
        out["PTV56_D95"] = np.percentile(d["PTV56"], 5)
    for organ in ("Rectum", "Bladder"):
        if organ in d:
            out[f"{organ}_Dmean"] = d[organ].mean()
            for x in (50, 60, 65, 70, 75):
                out[f"{organ}_V{x}"] = float((d[organ] >= x).mean())
    for f in ("Femur_L", "Femur_R"):
        if f in d:
            out[f"{f}_V50"] = float((d[f] >= 50).mean())
    if "Bowel" in d:
        out["Bowel_V45cc"] = float((d["Bowel"] >= 45).sum() * voxel_cc)
    return {k: round(float(v), 4) for k, v in out.items()}


@dataclass
class _Draw:
    """Everything random about a case, drawn from its seed: anatomy, goals, names and both grids."""

    patient: int
    plans_per_patient: int
    variant: int
    params: Any
    goals: dict[str, float]
    missing: list[str]
    present: list[str]
    names: dict[str, str]
    helper_names: dict[str, str]
    ct: Grid
    hu: np.ndarray
    masks: dict[str, np.ndarray]
    helpers: dict[str, np.ndarray]
    dgrid: Grid
    hu_dose_grid: np.ndarray
    masks_dose_grid: dict[str, np.ndarray]

    @property
    def planned_masks(self) -> dict[str, np.ndarray]:
        """The masks the planner optimises with, on the dose grid: only contoured structures (a
        structure missing from the RTSTRUCT is not spared, as no planner can spare what is not drawn)."""
        return {k: v for k, v in self.masks_dose_grid.items() if k not in self.missing}


def _draw_case(index: int, seed: int, settings: CohortSettings, goals: dict[str, float] | None) -> _Draw:
    ppp = max(int(settings.plans_per_patient), 1)
    patient, variant = (index - 1) // ppp + 1, (index - 1) % ppp
    rng = np.random.default_rng([seed, patient])  # the anatomy stream, shared by the patient's plans
    params = sample_pelvis(rng)
    drawn = sample_goals(rng)
    if variant:  # a further plan on the same anatomy: rectum and bladder tightness moved by half their range
        pos = tightness_positions(drawn)
        flip = {organ: (pos[organ] + 0.5 * variant) % 1.0 for organ in ("Rectum", "Bladder")}
        drawn = sample_goals(np.random.default_rng([seed, patient, 100 + variant]), flip)
    if goals:
        drawn.update(goals)
    missing = [s for s, p in (("Bowel", 0.15), ("Femur_L", 0.06), ("Femur_R", 0.06)) if rng.random() < p]
    present = ["BODY", *PROSTATE_SIB.channels, "SeminalVesicles"]
    present = [s for s in present if s not in missing]
    names, helper_names = draw_names(rng, present, n_helpers=int(rng.integers(2, 5)))
    phantom = Phantom(params)
    ct = settings.ct_grid()
    hu, masks = rasterise(phantom, ct, rng)
    helpers = helper_masks(masks, ct)
    helper_names = {k: v for k, v in helper_names.items() if helpers[k].any()}
    dgrid = _dose_grid(masks, ct, rng, settings.dose_mm)
    hu_d, masks_d = rasterise(phantom, dgrid, None)
    return _Draw(
        patient,
        ppp,
        variant,
        params,
        drawn,
        missing,
        present,
        names,
        helper_names,
        ct,
        hu,
        masks,
        helpers,
        dgrid,
        hu_d,
        masks_d,
    )


def plan_inputs(
    index: int, seed: int, settings: CohortSettings = CohortSettings(), goals: dict[str, float] | None = None
) -> tuple[np.ndarray, dict[str, np.ndarray], Grid, ConstraintVector]:
    """What the dose model plans case ``index`` of the cohort ``seed`` from, without writing anything:
    relative electron density and masks on the dose grid (Z, Y, X), the dose grid, the goals."""
    d = _draw_case(index, seed, settings, goals)
    return hu_to_density(d.hu_dose_grid), d.planned_masks, d.dgrid, ConstraintVector.from_goals(d.goals)


def generate_case(
    index: int,
    seed: int,
    out_dir: str | Path,
    settings: CohortSettings = CohortSettings(),
    goals: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Generate case ``index`` of the cohort with ``seed`` and write it under ``out_dir``.

    Args:
        index: case number (1-based); with ``seed`` it fixes everything about the case.
        seed: cohort seed.
        out_dir: cohort folder; the case goes to ``out_dir/SYN{index:04d}``.
        settings: image size settings.
        goals: override the drawn clinical goals (natural units), e.g. for what-if studies.

    Returns:
        The case summary (also in the sidecar JSON).
    """
    t0 = time.perf_counter()
    case_id = f"SYN{index:04d}"
    d = _draw_case(index, seed, settings, goals)
    ppp, patient, variant, params, drawn = d.plans_per_patient, d.patient, d.variant, d.params, d.goals
    present, names, helper_names, helpers = d.present, d.names, d.helper_names, d.helpers
    ct, hu, masks, dgrid, missing = d.ct, d.hu, d.masks, d.dgrid, d.missing
    hu_d, masks_d = d.hu_dose_grid, d.planned_masks
    plan_goals = ConstraintVector.from_goals(drawn)
    res = compute_plan_dose(
        hu_to_density(hu_d),
        masks_d,
        dgrid,
        plan_goals,
        np.random.default_rng([seed, index, 7]),
        ArcModel(n_angles=settings.n_angles),
    )
    dose = res.dose_gy
    # final normalisation as a TPS does: PTV70 D95 = 70 Gy on the CT structure
    d95 = np.percentile(_sample_on(dose, dgrid, ct, masks["PTV70"]), 5)
    dose = (dose * (70.0 / d95)).astype(np.float32)
    on_ct = {k: _sample_on(dose, dgrid, ct, masks[k]) for k in present if k != "BODY" and masks[k].any()}
    achieved = _metrics(on_ct, ct.voxel_volume_cc)

    with atomic_dir(Path(out_dir) / case_id) as tmp:
        patient_id = case_id if ppp == 1 else f"SYNP{patient:04d}"
        study = StudyInfo(
            patient_name=f"SYNTH^{patient_id}",
            patient_id=patient_id,
            study_uid=uid_from(seed, index, "study"),
            frame_uid=uid_from(seed, index, "frame"),
            study_id=case_id,
        )
        ct_series = uid_from(seed, index, "ct")
        write_ct_series(hu, ct, tmp / "CT", study, ct_series)
        roi_masks = {names[k]: masks[k] for k in present}
        roi_masks.update({helper_names[k]: helpers[k] for k in helper_names})
        roi_types = {
            names[k]: ("EXTERNAL" if k == "BODY" else "PTV" if k.startswith("PTV") else "ORGAN") for k in present
        }
        roi_types.update({v: "CONTROL" for v in helper_names.values()})
        rs_uid, rp_uid, rd_uid = (uid_from(seed, index, k) for k in ("rs", "rp", "rd"))
        roi_numbers = write_rtstruct(
            tmp / "CT",
            roi_masks,
            tmp / f"RS.{case_id}.dcm",
            study,
            uid_from(seed, index, "rs-series"),
            rs_uid,
            roi_types,
        )
        targets = [PlanTarget(roi_numbers[names[t]], names[t], dose_gy) for t, dose_gy in PROSTATE_SIB.targets.items()]
        goal_items, written_goals = _plan_goals(drawn, names, roi_numbers)
        iso = [float(v) for v in params.prostate_centre]
        write_rtplan(
            tmp / f"RP.{case_id}.dcm",
            study,
            uid_from(seed, index, "rp-series"),
            rp_uid,
            rs_uid,
            targets,
            goal_items,
            PROSTATE_SIB.fractions,
            iso,
        )
        write_rtdose(
            dose,
            dgrid,
            tmp / f"RD.{case_id}.dcm",
            study,
            uid_from(seed, index, "rd-series"),
            rd_uid,
            rp_uid,
            description="Plan dose",
        )
        summary = {
            "schema_version": SCHEMA_VERSION,
            "case_id": case_id,
            "index": index,
            "patient": patient,
            "plan_variant": variant,
            "seed": seed,
            **GENERATOR_VERSIONS,
            "settings": settings.to_dict(),
            "structure_names": {k: names[k] for k in present},
            "helper_names": helper_names,
            "missing_structures": missing,
            "goals_drawn": drawn,
            "goals_in_plan": written_goals,
            "prescription_gy": dict(PROSTATE_SIB.targets),
            "fractions": PROSTATE_SIB.fractions,
            "achieved": achieved,
            "ct_grid": {"origin": ct.origin, "spacing": ct.spacing, "shape": ct.shape},
            "dose_grid": {"origin": dgrid.origin, "spacing": dgrid.spacing, "shape": dgrid.shape},
            "anatomy": params.to_dict(),
            "optimiser_weights": [round(float(w), 5) for w in res.weights],
            "seconds": round(time.perf_counter() - t0, 2),
        }
        (tmp / SIDECAR).write_text(json.dumps(summary, indent=2))
    return summary


def _plan_goals(
    drawn: dict[str, float], names: dict[str, str], rois: dict[str, int]
) -> tuple[list[PlanGoal], dict[str, float]]:
    """Goals that can be written (their organ is contoured) and their natural values."""
    from vmat_monai.constraints import PROSTATE_LAYOUT

    items: list[PlanGoal] = []
    written: dict[str, float] = {}
    for spec in PROSTATE_LAYOUT:
        if spec.kind == "target" or spec.key not in drawn:
            continue
        organs = ["Femur_L", "Femur_R"] if spec.structure == "Femur" else [spec.structure]
        organs = [o for o in organs if o in names and names[o] in rois]
        if not organs:
            continue
        value = float(drawn[spec.key])
        for o in organs:
            if spec.kind == "dmax":
                items.append(PlanGoal(rois[names[o]], names[o], "dmax", value))
            else:
                items.append(PlanGoal(rois[names[o]], names[o], spec.kind, float(spec.dose_gy or 0.0), value))
        written[spec.key] = value
    return items, written
