"""Batch evaluation: predictions vs converted cases -> per-case CSV, summary JSON, figures.

Layout of the output folder::

    OUT/metrics.csv          one row per evaluated case (every metric; Gy, %, cc)
    OUT/goals.csv            one row per case and clinical goal (plan and prediction)
    OUT/summary.json         mean ± sd (min, max, n) of every metric, per structure, failures
    OUT/figures/<case_id>/   dose_slices, dvh, gamma, summary (.png at 300 DPI and .pdf)

A case missing on either side, or one that cannot be read, is reported in ``summary.json``
(``failed``/``missing``) and the others go on. Every file is written atomically.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from vmat_monai.atomic import write_csv_atomic, write_text_atomic
from vmat_monai.evaluation.case_metrics import CaseEvaluation, EvaluationInputError, evaluate_case, load_case
from vmat_monai.metrics.calibration import NORMAL_WITHIN, calibration, sigma_error_rank_correlation
from vmat_monai.metrics.dose_error import TARGET_REGIONS
from vmat_monai.metrics.gamma import GammaOptions

__all__ = ["EvaluationSettings", "evaluate_predictions", "find_pairs"]

PRED_NAME = "dose_pred.nii.gz"
STD_NAME = "dose_std.nii.gz"  # beside it: an ensemble's per-voxel sd (vmat_monai.engine.predict)
FIGURE_CHOICES = ("all", "summary", "none")


@dataclass(frozen=True)
class EvaluationSettings:
    """Options of ``vmat-monai evaluate``."""

    gamma: GammaOptions = field(default_factory=GammaOptions)
    with_gamma: bool = True
    figures: str = "all"
    structure_set: str | None = None

    def __post_init__(self) -> None:
        if self.figures not in FIGURE_CHOICES:
            raise ValueError(f"figures must be one of {FIGURE_CHOICES} (got {self.figures!r})")


def _case_dirs(ref: Path) -> dict[str, Path]:
    """case_id -> case folder for a data folder, one case folder, or a datalist (its case folders)."""
    if ref.suffix == ".json" and ref.is_file():
        dl = json.loads(ref.read_text())
        dirs = [
            (ref.parent / item["image"]).parent
            for split in ("training", "validation", "test")
            for item in dl.get(split, [])
        ]
    elif (ref / "case.json").is_file():
        dirs = [ref]
    elif ref.is_dir():
        dirs = [p.parent for p in sorted(ref.glob("*/case.json"))]
    else:
        raise FileNotFoundError(f"--ref {ref}: not a data folder, case folder or datalist")
    return {json.loads((d / "case.json").read_text())["case_id"]: d for d in dirs if (d / "case.json").is_file()}


def find_pairs(pred: str | Path, ref: str | Path) -> tuple[list[tuple[str, Path, Path]], dict[str, str]]:
    """Match predictions (``PRED/<case_id>/dose_pred.nii.gz``) with case folders.

    Returns (pairs of (case_id, case_dir, pred_path), missing: case_id -> which side lacks it).
    """
    pred, ref = Path(pred), Path(ref)
    if not pred.is_dir():
        raise FileNotFoundError(f"--pred {pred}: not a folder of predictions")
    refs = _case_dirs(ref)
    preds = {p.parent.name: p for p in sorted(pred.glob(f"*/{PRED_NAME}"))}
    missing = {cid: "no planned case folder in --ref" for cid in preds if cid not in refs}
    pairs = [(cid, refs[cid], preds[cid]) for cid in sorted(preds) if cid in refs]
    if not pairs:
        raise FileNotFoundError(
            f"no prediction in {pred} matches a case in {ref} (looked for <case_id>/{PRED_NAME}); "
            "predict first, or check the two folders"
        )
    return pairs, missing


def _table(ev: CaseEvaluation, primary: str) -> list[tuple[str, str]]:
    r = ev.row
    fmt = [
        ("MAE body (Gy)", "MAE_body", "{:.2f}"),
        ("mean error body (Gy)", "ME_body", "{:+.2f}"),
        ("MAE targets / fall-off / far (Gy)", None, None),
        ("mean error targets / fall-off / far (Gy)", None, None),
        (f"{primary} D95 plan / pred (Gy)", None, None),
        (f"{primary} D95 error (Gy)", f"{primary}_D95_err", "{:+.2f}"),
        ("gamma pass rate (%)", "gamma_pass_rate", "{:.1f}"),
        ("gamma criteria", "gamma_criteria", "{}"),
        ("OpenKBP dose score (Gy)", "dose_score", "{:.2f}"),
        ("OpenKBP DVH score (Gy)", "dvh_score", "{:.2f}"),
        ("goals met plan / pred (%)", None, None),
        ("goal agreement (%)", "goals_agreement", "{:.0f}"),
    ]
    out = []
    for label, key, f in fmt:
        if key is None and "D95" in label:
            out.append(
                (label, f"{r.get(f'{primary}_D95_plan', np.nan):.2f} / {r.get(f'{primary}_D95_pred', np.nan):.2f}")
            )
        elif key is None and "fall-off" in label:
            stat, f = ("MAE", "{:.2f}") if label.startswith("MAE") else ("ME", "{:+.2f}")
            out.append((label, " / ".join(f.format(r.get(f"{stat}_{k}", np.nan)) for k in TARGET_REGIONS)))
        elif key is None:
            out.append((label, f"{r['goals_pass_rate_plan']:.0f} / {r['goals_pass_rate_pred']:.0f}"))
        elif key in r:
            out.append((label, f.format(r[key])))
    return out


def _figures(case: Any, ev: CaseEvaluation, out: Path, which: str) -> None:
    from vmat_monai.evaluation import figures as fg

    primary = case.structure_set.primary_target
    centre = fg.centre_of(case.masks.get(primary), case.ct.shape)
    rx = case.prescription_gy
    title = f"{case.case_id}"
    goals = [
        (g.goal, f"{g.value:.1f} {'✓' if g.passed else '✗'}", f"{q.value:.1f} {'✓' if q.passed else '✗'}")
        for g, q in zip(ev.goals_plan, ev.goals_pred, strict=True)
    ]
    fig = fg.summary_figure(
        case.ct,
        case.plan,
        case.pred,
        ev.gamma_map,
        case.masks,
        case.spacing,
        rx,
        centre,
        ev.dvh_plan,
        ev.dvh_pred,
        _table(ev, primary),
        goals,
        f"{title}: predicted vs planned dose",
    )
    fg.save_figure(fig, out / "summary")
    if which != "all":
        return
    fg.save_figure(
        fg.dose_slices_figure(case.ct, case.plan, case.pred, case.masks, case.spacing, rx, centre, title),
        out / "dose_slices",
    )
    fg.save_figure(fg.dvh_figure(ev.dvh_plan, ev.dvh_pred, f"{title}: DVH, plan vs prediction"), out / "dvh")
    if ev.gamma_map is not None:
        pr = ev.row.get("gamma_pass_rate", float("nan"))
        fg.save_figure(
            fg.gamma_figure(
                case.ct,
                ev.gamma_map,
                case.masks,
                case.spacing,
                centre,
                f"{title}: gamma {ev.row['gamma_criteria']}, pass rate {pr:.1f} %",
            ),
            out / "gamma",
        )


def _stats(values: Sequence[float]) -> dict[str, float]:
    v = np.asarray([x for x in values if isinstance(x, int | float) and math.isfinite(x)], dtype=np.float64)
    if not v.size:
        return {"n": 0}
    return {
        "mean": float(v.mean()),
        "sd": float(v.std(ddof=1)) if v.size > 1 else 0.0,
        "min": float(v.min()),
        "max": float(v.max()),
        "n": int(v.size),
    }


def summarise(rows: Sequence[dict[str, Any]], structures: Sequence[str]) -> dict[str, Any]:
    """Mean ± sd of every numeric column, and a per-structure view of the DVH errors."""
    cols: list[str] = []
    for r in rows:  # union over cases: a structure may be missing in some
        cols += [k for k, v in r.items() if k != "case_id" and isinstance(v, int | float) and k not in cols]
    metrics = {c: _stats([r.get(c, np.nan) for r in rows]) for c in cols}
    per_structure: dict[str, Any] = {}
    for s in structures:
        keys = [c for c in cols if c.startswith(f"{s}_") and (c.endswith("_err") or c.endswith("MAE"))]
        if keys:
            per_structure[s] = {k[len(s) + 1 :]: metrics[k] for k in keys}
            per_structure[s].update(
                {
                    k[len(s) + 1 : -4] + "_abs_err": _stats([abs(r[k]) for r in rows if k in r])
                    for k in keys
                    if k.endswith("_err")
                }
            )
    return {"metrics": metrics, "per_structure": per_structure}


def evaluate_predictions(
    pred: str | Path,
    ref: str | Path,
    out: str | Path | None = None,
    settings: EvaluationSettings | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> dict[str, Any]:
    """Evaluate every prediction that has a case folder; returns the summary (also written to disk)."""
    settings = settings or EvaluationSettings()
    out = Path(out) if out is not None else Path(pred) / "evaluation"
    pairs, missing = find_pairs(pred, ref)
    rows: list[dict[str, Any]] = []
    goal_rows: list[dict[str, Any]] = []
    failed: dict[str, str] = {}
    structures: list[str] = []
    for n, (cid, case_dir, pred_path) in enumerate(pairs):
        if progress:
            progress(n, len(pairs), cid)
        try:
            case = load_case(case_dir, pred_path, settings.structure_set)
            ev = evaluate_case(case, settings.gamma, settings.with_gamma)
            structures = structures or list(case.structure_set.channels)
            std_path = pred_path.parent / STD_NAME
            if std_path.is_file():  # an ensemble's (or sampler's) per-voxel sd: how well calibrated is it
                sigma = np.asarray(nib.load(str(std_path)).dataobj, dtype=np.float64).reshape(case.pred.shape)
                cal = calibration(case.pred, case.plan, sigma, case.body)
                ev.row.update({k: v for k, v in cal.items() if k != "MAE_gy"})
            rows.append(ev.row)
            for g, q in zip(ev.goals_plan, ev.goals_pred, strict=True):
                goal_rows.append(
                    {
                        "case_id": cid,
                        "goal": g.goal,
                        "structure": g.structure,
                        "limit": g.limit,
                        "plan": g.value,
                        "plan_passed": g.passed,
                        "pred": q.value,
                        "pred_passed": q.passed,
                    }
                )
            if settings.figures != "none":
                _figures(case, ev, out / "figures" / cid, settings.figures)
        except (EvaluationInputError, ValueError, OSError) as exc:
            failed[cid] = str(exc)
    if progress:
        progress(len(pairs), len(pairs), "")
    summary = {
        "n_cases": len(rows),
        "cases": [r["case_id"] for r in rows],
        "failed": failed,
        "missing": missing,
        "settings": {**asdict(settings.gamma), "with_gamma": settings.with_gamma, "possible_dose_mask": "body"},
        **summarise(rows, structures),
    }
    with_sd = [r for r in rows if "mean_sd_gy" in r]
    if with_sd:
        summary["calibration"] = {
            "cases": len(with_sd),
            "within_1sd_pct": float(np.mean([r["within_1sd_pct"] for r in with_sd])),
            "within_2sd_pct": float(np.mean([r["within_2sd_pct"] for r in with_sd])),
            "normal_within_pct": {"1": NORMAL_WITHIN[1], "2": NORMAL_WITHIN[2]},
            "mean_sd_gy": float(np.mean([r["mean_sd_gy"] for r in with_sd])),
            "sd_vs_error_spearman": sigma_error_rank_correlation(
                [r["mean_sd_gy"] for r in with_sd], [r["MAE_body"] for r in with_sd]
            ),
        }
    if rows:
        write_csv_atomic(out / "metrics.csv", rows, "{:.6g}")
        write_csv_atomic(out / "goals.csv", goal_rows, "{:.6g}")
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2, default=float))
    summary["output_dir"] = str(out)
    return summary
