"""The synthetic end-to-end demo: every stage of the pipeline on a generated prostate cohort.

Stages (everything under ``workdir``; each reuses what an earlier run finished unless ``fresh``):
1. synthetic cohort as DICOM-RT (``dicom/``); 2. read-back check of every plan; 3. conversion to
case folders and ``datalist.json`` (``data/``); 4. bounded training through the bundle (``model/``);
5. prediction of the held-out cases (``predictions/``: NIfTI + RTDOSE); 6. evaluation against
the planned doses (``predictions/evaluation/``); 7. what-if with tighter rectum goals (``what_if/``).
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from vmat_monai.workflows.text import (
    ProgressFactory,
    Report,
    cohort_lines,
    conversion_lines,
    evaluation_lines,
    no_progress,
    stderr,
)

__all__ = ["DEMO_CONFIGS", "DEMO_TARGETS", "DEMO_WHAT_IF", "DemoOptions", "DemoResult", "predict_held_out", "run_demo"]

DEMO_CONFIGS = "cpu,residual"  # the demo's bundle configs (docs/EXPERIMENTS.md, run K)
DEMO_WHAT_IF = {"rectum_V50": 0.25, "rectum_V60": 0.15, "rectum_V70": 0.08}
# headline metrics of the summary: key, label, target
DEMO_TARGETS = (
    ("MAE_body", "MAE in the body (Gy)", "<= 1.5"),
    ("gamma_pass_rate", "gamma 3%/3mm global (%)", ">= 90"),
    ("PTV70_D95_err", "PTV70 D95 error (Gy)", "|.| <= 1.5"),
    ("goals_agreement", "clinical goals, pred vs plan agree (%)", ""),
    ("goals_pass_rate_pred", "clinical goals met by prediction (%)", ""),
)


@dataclass(frozen=True)
class DemoOptions:
    """Options of the demo.

    Args:
        workdir: where everything is written.
        cases: synthetic plans.
        plans_per_patient: plans with different goals per anatomy.
        seed: seed of the cohort and of the split.
        workers: processes for generation and conversion.
        fresh: redo every stage instead of reusing finished work.
        train_minutes: training budget, minutes (0: stop after the data stages).
        configs: bundle configs stacked on ``train.json`` / ``inference.json``.
        what_if_goals: goals of the what-if (natural units).
    """

    workdir: Path = Path("runs/default")
    cases: int = 32
    plans_per_patient: int = 2
    seed: int = 0
    workers: int = 2
    fresh: bool = False
    train_minutes: float = 15.0
    configs: str = DEMO_CONFIGS
    what_if_goals: Mapping[str, float] = field(default_factory=lambda: dict(DEMO_WHAT_IF))


@dataclass
class DemoResult:
    """What each stage produced (None for stages that did not run)."""

    cohort: dict[str, Any]
    check: list[dict[str, Any]]
    conversion: dict[str, Any]
    checkpoint: Path | None = None
    evaluation: dict[str, Any] | None = None
    what_if: dict[str, Any] | None = None

    @property
    def exit_code(self) -> int:
        """0 when every stage succeeded for every case, 1 otherwise."""
        bad = (
            bool(self.cohort["failed"])
            or not all(r["ok"] for r in self.check)
            or bool(self.conversion["failed"])
            or bool(self.evaluation and self.evaluation["failed"])
        )
        return int(bad)


def predict_held_out(
    predictor: Any, datalist: Path, out_dir: Path, splits: Sequence[str] = ("validation", "test"), fresh: bool = False
) -> list[Path]:
    """Predict the cases of ``splits`` (never trained on); keeps the cases already predicted by the
    same checkpoint, settings and inputs unless ``fresh``."""
    from vmat_monai.data.datasets import load_datalist
    from vmat_monai.engine.predict import PRED_NAME

    items = [it for s in splits for it in load_datalist(datalist, s)]
    predictor.predict_items(items, out_dir, resume=not fresh)
    return [out_dir / it["case_id"] / PRED_NAME for it in items]


def run_demo(
    opts: DemoOptions = DemoOptions(),
    report: Report = print,
    report_error: Report = stderr,
    progress: ProgressFactory = no_progress,
) -> DemoResult:
    """Run the demo's stages; lines of text go to ``report`` / ``report_error``.

    Raises:
        ValueError: for bad options or when the cohort leaves no case to hold out.
        RuntimeError: when the work folder's training cannot be reused (message says what to pass).
    """
    from vmat_monai.data.convert import ConvertOptions
    from vmat_monai.data.convert_tree import convert_tree
    from vmat_monai.data.synthetic.check import check_cohort
    from vmat_monai.data.synthetic.cohort import CohortSettings
    from vmat_monai.data.synthetic.cohort_runner import generate_cohort

    if opts.cases < 1 or opts.plans_per_patient < 1 or opts.workers < 1:
        raise ValueError("cases, plans per patient and workers must be at least 1")
    root = Path(opts.workdir)
    dicom_dir, data_dir = root / "dicom", root / "data"
    if opts.fresh:  # the demo's own outputs: start from nothing (the cohort is overwritten below)
        for sub in ("data", "predictions", "what_if"):
            shutil.rmtree(root / sub, ignore_errors=True)
    report(f"[1/7] synthetic cohort: {opts.cases} cases in {dicom_dir}")
    with progress("synth") as bar:
        cohort = generate_cohort(
            dicom_dir,
            opts.cases,
            seed=opts.seed,
            settings=replace(CohortSettings(), plans_per_patient=opts.plans_per_patient),
            overwrite=opts.fresh,
            resume=not opts.fresh,
            workers=opts.workers,
            progress=bar,
        )
    for line in cohort_lines(cohort):
        report(line)
    report(f"cohort: {dicom_dir.resolve()} ({len(cohort['cases'])} cases)")
    for case, err in cohort["failed"].items():
        report_error(f"FAILED {case}: {err}")
    report("[2/7] reading the cohort back (pydicom, SimpleITK, rt-utils) and checking the plans")
    check = check_cohort(dicom_dir)
    for r in check:
        if not r["ok"]:
            report_error(f"CHECK FAILED {r['case_id']}: {'; '.join(r['problems'])}")
    report(f"checked {sum(r['ok'] for r in check)}/{len(check)} cases OK")
    report(f"[3/7] converting DICOM-RT to case folders in {data_dir}")
    with progress("convert") as bar:
        conversion = convert_tree(
            dicom_dir, data_dir, ConvertOptions(overwrite=opts.fresh, seed=opts.seed), opts.workers, bar
        )
    for line in conversion_lines(conversion, data_dir):
        report(line)
    result = DemoResult(cohort, check, conversion)
    if opts.train_minutes > 0:
        _model_stages(opts, root, dicom_dir, data_dir, result, report, report_error, progress)
    return result


def _model_stages(
    opts: DemoOptions,
    root: Path,
    dicom_dir: Path,
    data_dir: Path,
    result: DemoResult,
    report: Report,
    report_error: Report,
    progress: ProgressFactory,
) -> None:
    """Stages 4-7: training, prediction, evaluation, what-if."""
    from vmat_monai.data.datasets import load_datalist
    from vmat_monai.engine.bounded_training import train_bounded
    from vmat_monai.engine.bundle import predictor_from_bundle
    from vmat_monai.evaluation.report import EvaluationSettings, evaluate_predictions
    from vmat_monai.workflows.what_if import what_if

    datalist = data_dir / "datalist.json"
    model_dir, pred_dir, what_if_dir = root / "model", root / "predictions", root / "what_if"
    if not (load_datalist(datalist, "validation") and load_datalist(datalist, "test")):
        raise ValueError(f"{datalist}: no validation or test cases to hold out; generate more cases (--cases)")
    report(f"[4/7] training ({opts.configs} configuration) for {opts.train_minutes:g} min in {model_dir}")
    ckpt = train_bounded(datalist, model_dir, opts.train_minutes, opts.configs, fresh=opts.fresh)
    result.checkpoint = ckpt
    report(f"[5/7] predicting the held-out cases (validation + test) into {pred_dir}")
    predictor = predictor_from_bundle(ckpt, opts.configs, rtdose=True, dicom_source=str(dicom_dir))
    predict_held_out(predictor, datalist, pred_dir, fresh=opts.fresh)
    report("[6/7] evaluating against the planned doses")
    with progress("evaluate") as bar:
        summary = evaluate_predictions(pred_dir, datalist, pred_dir / "evaluation", EvaluationSettings(), bar)
    result.evaluation = summary
    lines, errors = evaluation_lines(summary)
    for line in lines:
        report(line)
    for line in errors:
        report_error(line)
    report("[7/7] what-if: the first test case with tighter rectum goals")
    item = (load_datalist(datalist, "test") or load_datalist(datalist, "validation"))[0]
    res = what_if(predictor, item, opts.what_if_goals, what_if_dir)
    result.what_if = res
    ch = res["change"]
    report(
        f"{item['case_id']}: rectum Dmean {res['own_goals']['Dmean']:.2f} -> {res['tightened_goals']['Dmean']:.2f} Gy "
        f"({ch['Dmean']:+.2f}), V70 {ch['V70']:+.2f} %-points, PTV70 D95 {res['ptv_d95_own']:.2f} -> "
        f"{res['ptv_d95_tightened']:.2f} Gy"
    )
    m = summary["metrics"]
    report("\ndemo summary (held-out synthetic cases):")
    for key, label, target in DEMO_TARGETS:
        s = m.get(key, {})
        if s.get("n"):
            report(f"  {label:<42}{s['mean']:>8.2f} ± {s['sd']:.2f}  (target {target or '-'})")
    out = Path(summary["output_dir"]).resolve()
    report(f"report: {out / 'metrics.csv'}, {out / 'summary.json'}\nfigures: {out / 'figures'}")
    report(f"predictions (NIfTI + RTDOSE): {pred_dir.resolve()}\nwhat-if: {what_if_dir.resolve()}")
