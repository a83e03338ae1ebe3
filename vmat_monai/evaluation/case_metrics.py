"""Every metric of one case: predicted dose vs the planned dose of its case folder."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vmat_monai.constraints import ConstraintVector
from vmat_monai.metrics.dose_error import errors_by_target_distance, mean_absolute_error, mean_error
from vmat_monai.metrics.dvh import DEFAULT_STATS, DVH, cumulative_dvh, dvh_statistics
from vmat_monai.metrics.gamma import GammaOptions, gamma, pass_rate
from vmat_monai.metrics.goals import GoalResult, evaluate_goals, goal_agreement
from vmat_monai.metrics.openkbp import dose_score, dvh_metrics, dvh_score
from vmat_monai.structures import StructureSet, get_structure_set

__all__ = ["CaseData", "CaseEvaluation", "evaluate_case", "load_case"]


class EvaluationInputError(Exception):
    """A case that cannot be evaluated (message names the case and the file)."""


@dataclass
class CaseData:
    """A case on its CT grid, arrays indexed (x, y, z) as stored in the NIfTI files."""

    case_id: str
    ct: np.ndarray  # HU
    plan: np.ndarray  # Gy
    pred: np.ndarray  # Gy
    masks: dict[str, np.ndarray]  # canonical name -> bool
    body: np.ndarray  # bool
    spacing: tuple[float, float, float]  # mm, (x, y, z)
    structure_set: StructureSet
    constraints: dict[str, float]  # key -> natural value
    prescription_gy: float

    @property
    def voxel_cc(self) -> float:
        return float(np.prod(self.spacing)) / 1000.0


@dataclass
class CaseEvaluation:
    """The metrics row and what the figures need."""

    row: dict[str, Any]
    goals_plan: list[GoalResult]
    goals_pred: list[GoalResult]
    dvh_plan: dict[str, DVH] = field(default_factory=dict)
    dvh_pred: dict[str, DVH] = field(default_factory=dict)
    gamma_map: np.ndarray | None = None


def _load(path: Path, what: str, case_id: str) -> Any:
    import nibabel as nib

    if not path.is_file():
        raise EvaluationInputError(f"{case_id}: {what} {path} is missing")
    try:
        return nib.load(str(path))
    except Exception as exc:
        raise EvaluationInputError(f"{case_id}: cannot read {what} {path} ({exc}); re-create it") from None


def load_case(case_dir: Path, pred_path: Path, structure_set: str | StructureSet | None = None) -> CaseData:
    """Read a converted case folder and a predicted dose NIfTI on the same CT grid."""
    info_path = case_dir / "case.json"
    if not info_path.is_file():
        raise EvaluationInputError(f"{case_dir}: no case.json; point --ref at the converted data folder")
    info = json.loads(info_path.read_text())
    cid = str(info["case_id"])
    if not info.get("has_dose", True):
        raise EvaluationInputError(f"{cid}: the case has no planned dose (converted for inference only)")
    ct_img = _load(case_dir / "ct.nii.gz", "CT", cid)
    pred_img = _load(pred_path, "prediction", cid)
    plan_img = _load(case_dir / "dose.nii.gz", "planned dose", cid)
    masks_img = _load(case_dir / "masks.nii.gz", "masks", cid)
    body_img = _load(case_dir / "body.nii.gz", "body", cid)
    if pred_img.shape[:3] != ct_img.shape[:3] or not np.allclose(pred_img.affine, ct_img.affine, atol=1e-3):
        raise EvaluationInputError(
            f"{cid}: {pred_path} is not on the case's CT grid (shape {pred_img.shape} vs {ct_img.shape}); "
            "predict with vmat-monai/DosePredictor, which writes the dose on the original CT grid"
        )
    sset = get_structure_set(structure_set or info.get("structure_set", "prostate_sib"))
    channels = info.get("channels", list(sset.channels))
    m = np.asarray(masks_img.dataobj) > 0
    masks = {name: m[..., i] for i, name in enumerate(channels) if name in sset.channels and m[..., i].any()}
    pred = np.asarray(pred_img.dataobj, dtype=np.float64).reshape(ct_img.shape[:3])
    if not np.all(np.isfinite(pred)):
        raise EvaluationInputError(f"{cid}: {pred_path} contains NaN/inf; re-run the prediction")
    return CaseData(
        case_id=cid,
        ct=np.asarray(ct_img.dataobj, dtype=np.float32),
        plan=np.asarray(plan_img.dataobj, dtype=np.float64),
        pred=pred,
        masks=masks,
        body=np.asarray(body_img.dataobj) > 0,
        spacing=tuple(float(v) for v in ct_img.header.get_zooms()[:3]),  # type: ignore[arg-type]
        structure_set=sset,
        constraints=ConstraintVector.from_dict(info["constraints"]).as_goals(),
        prescription_gy=float(info.get("primary_prescription_gy", sset.prescription_gy)),
    )


def evaluate_case(case: CaseData, gamma_options: GammaOptions | None = None, with_gamma: bool = True) -> CaseEvaluation:
    """All metrics of one case (dose in Gy, volumes in cc, gamma pass rate in %)."""
    sset = case.structure_set
    row: dict[str, Any] = {"case_id": case.case_id}
    row["MAE_body"] = mean_absolute_error(case.pred, case.plan, case.body)
    row["ME_body"] = mean_error(case.pred, case.plan, case.body)
    row["dose_score"] = dose_score(case.pred, case.plan, case.body)  # possible-dose mask = body
    ok_targets = [t for t in sset.targets if t in case.masks]
    union = np.zeros(case.plan.shape, dtype=bool)
    for t in ok_targets:
        union |= case.masks[t]
    row.update(errors_by_target_distance(case.pred, case.plan, union, case.body, case.spacing))
    ref_kbp = dvh_metrics(case.plan, case.masks, case.spacing, ok_targets)
    pred_kbp = dvh_metrics(case.pred, case.masks, case.spacing, ok_targets)
    row["dvh_score"] = dvh_score([pred_kbp], [ref_kbp])
    primary = sset.primary_target
    ev = CaseEvaluation(row, [], [])
    flat_plan, flat_pred = case.plan.ravel(), case.pred.ravel()
    for name in sset.channels:
        if name not in case.masks:
            continue
        idx = np.flatnonzero(case.masks[name])  # the structure's voxels, extracted once
        p, q, ones = flat_plan[idx], flat_pred[idx], np.ones(idx.size)
        row[f"{name}_MAE"] = mean_absolute_error(q, p)
        row[f"{name}_ME"] = mean_error(q, p)
        sp = dvh_statistics(p, ones, case.voxel_cc, DEFAULT_STATS)
        sq = dvh_statistics(q, ones, case.voxel_cc, DEFAULT_STATS)
        for k in DEFAULT_STATS:
            row[f"{name}_{k}_plan"] = sp[k]
            row[f"{name}_{k}_pred"] = sq[k]
            row[f"{name}_{k}_err"] = sq[k] - sp[k]
        top = max(float(p.max()), float(q.max()))
        ev.dvh_plan[name] = cumulative_dvh(p, ones, case.voxel_cc, max_gy=top)
        ev.dvh_pred[name] = cumulative_dvh(q, ones, case.voxel_cc, max_gy=top)
    row[f"{primary}_D95_err"] = row.get(f"{primary}_D95_err", float("nan"))
    ev.goals_plan = evaluate_goals(case.plan, case.masks, sset, case.constraints, case.voxel_cc)
    ev.goals_pred = evaluate_goals(case.pred, case.masks, sset, case.constraints, case.voxel_cc)
    row["goals_n"] = len(ev.goals_plan)
    row["goals_pass_rate_plan"] = 100.0 * np.mean([g.passed for g in ev.goals_plan]) if ev.goals_plan else np.nan
    row["goals_pass_rate_pred"] = 100.0 * np.mean([g.passed for g in ev.goals_pred]) if ev.goals_pred else np.nan
    row["goals_agreement"] = 100.0 * goal_agreement(ev.goals_pred, ev.goals_plan)
    if with_gamma:
        opts = gamma_options or GammaOptions()
        axes = [np.arange(n) * s for n, s in zip(case.plan.shape, case.spacing, strict=True)]
        ev.gamma_map = gamma(axes, case.plan, axes, case.pred, opts)
        row["gamma_pass_rate"] = pass_rate(ev.gamma_map)
        row["gamma_mean"] = float(np.nanmean(ev.gamma_map)) if np.any(~np.isnan(ev.gamma_map)) else np.nan
        row["gamma_criteria"] = (
            f"{opts.dose_percent:g}%/{opts.distance_mm:g}mm {'local' if opts.local_gamma else 'global'}, "
            f"cutoff {opts.lower_percent_dose_cutoff:g}%"
        )
    return ev
