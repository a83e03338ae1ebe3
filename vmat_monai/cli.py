"""The ``vmat-monai`` command: thin argument parsing over the library.

Subcommands:
    synth    generate a synthetic DICOM-RT prostate cohort
    convert  DICOM-RT folders -> case folders + datalist.json + QA report
    evaluate predicted doses vs planned doses: metrics CSV, summary JSON, figures
    export-rtdose  a predicted dose NIfTI -> DICOM RTDOSE
    predict  full-volume prediction with a trained checkpoint (what-if goals with --constraint)
    main     the main job on the embedded default data (synthetic cohort)

Errors a user can fix are reported on one line (``error: ...``) with a non-zero exit.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vmat_monai.metrics.gamma import GammaOptions

__all__ = ["main"]

MAIN_CONFIG = "cpu,residual"  # the main job's bundle overrides (docs/BENCHMARKS.md, run K)
DEFAULT_PREDICT_CONFIG = "cpu"  # predict, for a checkpoint without a training record


class UserError(Exception):
    """A problem with the user's input, reported on one line without a traceback."""


@contextmanager
def _progress(desc: str) -> Iterator[Callable[[int, int, str], None]]:
    """A tqdm progress bar driven by the library's ``progress(done, total, case)`` callbacks."""
    from tqdm.auto import tqdm

    bar = None

    def update(done: int, total: int, case: str) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc=desc, unit="case", dynamic_ncols=True, file=sys.stderr)
        bar.n = done
        bar.set_postfix_str(case)
        bar.refresh()

    try:
        yield update
    finally:
        if bar is not None:
            bar.close()


def _cmd_synth(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from vmat_monai.data.synthetic.cohort import CohortSettings, generate_cohort

    if args.cases < 1:
        raise UserError(f"--cases must be at least 1 (got {args.cases})")
    if args.plans_per_patient < 1:
        raise UserError(f"--plans-per-patient must be at least 1 (got {args.plans_per_patient})")
    if args.workers < 1:
        raise UserError(f"--workers must be at least 1 (got {args.workers})")
    try:
        with _progress("synth") as progress:
            manifest = generate_cohort(
                args.out,
                args.cases,
                seed=args.seed,
                settings=replace(
                    CohortSettings.full_size() if args.full_size else CohortSettings(),
                    plans_per_patient=args.plans_per_patient,
                ),
                overwrite=args.overwrite,
                resume=args.resume,
                workers=args.workers,
                progress=progress,
            )
    except (FileExistsError, PermissionError, ValueError) as exc:
        raise UserError(str(exc)) from None
    _print_cohort(manifest)
    print(f"cohort: {Path(args.out).resolve()} ({len(manifest['cases'])} cases)")
    if manifest["failed"]:
        for case, err in manifest["failed"].items():
            print(f"FAILED {case}: {err}", file=sys.stderr)
        return 1
    return 0


def _print_cohort(manifest: dict) -> None:
    rows = manifest["cases"]
    if not rows:
        return
    print(
        f"{'case':<9}{'PTV70 D95':>10}{'PTV70 Dmax':>11}{'PTV56 D95':>10}{'Rect V70':>9}{'Rect V70 goal':>14}{'s':>6}"
    )
    for r in rows:
        a, g = r["achieved"], r["goals_in_plan"]
        print(
            f"{r['case_id']:<9}{a.get('PTV70_D95', float('nan')):>10.2f}{a.get('PTV70_Dmax', float('nan')):>11.2f}"
            f"{a.get('PTV56_D95', float('nan')):>10.2f}{a.get('Rectum_V70', float('nan')):>9.3f}"
            f"{g.get('rectum_V70', float('nan')):>14.3f}{r['seconds']:>6.1f}"
        )


def _cmd_convert(args: argparse.Namespace) -> int:
    from vmat_monai.data.convert import ConvertOptions, convert_tree
    from vmat_monai.dicom.readers import DicomInputError

    if args.workers < 1:
        raise UserError(f"--workers must be at least 1 (got {args.workers})")
    opts = ConvertOptions(
        structure_set=args.structure_set,
        mapping=args.mapping,
        allow_missing_dose=args.allow_missing_dose,
        keep_phi=args.keep_phi,
        overwrite=args.overwrite,
        seed=args.seed,
        source_format=args.format,
    )
    try:
        with _progress("convert") as progress:
            summary = convert_tree(args.input, args.output, opts, workers=args.workers, progress=progress)
    except (DicomInputError, ValueError, KeyError) as exc:
        raise UserError(str(exc).strip('"')) from None
    for row in summary["cases"]:
        if row["status"] == "failed":
            print(f"FAILED {row['case_id']}: {row['errors']}", file=sys.stderr)
    print(
        f"studies: {summary['n_studies']}  converted: {summary['converted']}  skipped: {summary['skipped']}  "
        f"failed: {summary['failed']}  split: {summary['split']}"
    )
    print(f"datalist: {Path(args.output).resolve() / 'datalist.json'}")
    print(f"QA report: {Path(args.output).resolve() / 'qa_report.csv'}")
    return 1 if summary["failed"] else 0


def _gamma_options(args: argparse.Namespace) -> GammaOptions:
    from vmat_monai.metrics.gamma import GammaOptions

    try:
        dose_pct, dist_mm = (float(v) for v in args.gamma.split(","))
    except ValueError:
        raise UserError(f"--gamma takes DOSE_PERCENT,DISTANCE_MM, e.g. 3,3 (got {args.gamma!r})") from None
    try:
        return GammaOptions(
            dose_percent=dose_pct,
            distance_mm=dist_mm,
            lower_percent_dose_cutoff=args.gamma_cutoff,
            interp_fraction=args.interp_fraction,
            max_gamma=args.max_gamma,
            local_gamma=args.local_gamma,
            random_subset=args.gamma_subset,
            seed=args.seed,
        )
    except ValueError as exc:
        raise UserError(str(exc)) from None


def print_evaluation(summary: dict) -> None:
    """Per-case table and mean ± sd of the headline metrics."""
    import csv

    path = Path(summary["output_dir"]) / "metrics.csv"
    rows = list(csv.DictReader(path.open())) if path.is_file() else []
    cols = [
        ("MAE_body", "MAE Gy", "{:>8.2f}"),
        ("gamma_pass_rate", "gamma %", "{:>8.1f}"),
        ("PTV70_D95_err", "D95err Gy", "{:>10.2f}"),
        ("goals_pass_rate_pred", "goals %", "{:>8.0f}"),
        ("goals_agreement", "agree %", "{:>8.0f}"),
    ]
    cols = [c for c in cols if rows and c[0] in rows[0]]
    print(f"{'case':<22}" + "".join(f"{h:>{10 if 'D95' in h else 8}}" for _, h, _ in cols))
    for r in rows:
        print(f"{r['case_id']:<22}" + "".join(f.format(float(r[k])) if r[k] else " " * 8 for k, _, f in cols))
    m = summary["metrics"]
    print(
        f"{'mean ± sd':<22}"
        + "  ".join(f"{h} {m[k]['mean']:.2f} ± {m[k]['sd']:.2f}" for k, h, _ in cols if m.get(k, {}).get("n"))
    )
    for cid, err in {**summary["missing"], **summary["failed"]}.items():
        print(f"NOT EVALUATED {cid}: {err}", file=sys.stderr)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from vmat_monai.evaluation.report import EvaluationSettings, evaluate_predictions

    settings = EvaluationSettings(
        gamma=_gamma_options(args),
        with_gamma=not args.no_gamma,
        figures=args.figures,
        structure_set=args.structure_set,
    )
    try:
        with _progress("evaluate") as progress:
            summary = evaluate_predictions(args.pred, args.ref, args.out, settings, progress=progress)
    except (FileNotFoundError, ValueError) as exc:
        raise UserError(str(exc)) from None
    print_evaluation(summary)
    out = Path(summary["output_dir"]).resolve()
    print(f"metrics: {out / 'metrics.csv'}\nsummary: {out / 'summary.json'}")
    if args.figures != "none":
        print(f"figures: {out / 'figures'}")
    return 1 if summary["failed"] else 0


def _cmd_export(args: argparse.Namespace) -> int:
    from vmat_monai.dicom.export import export_rtdose
    from vmat_monai.dicom.readers import DicomInputError

    pred = Path(args.pred)
    case_json = Path(args.case) / "case.json" if args.case else None
    if case_json is not None and not case_json.is_file():
        raise UserError(f"--case {args.case}: no case.json there; pass the converted case folder")
    out = Path(args.out) if args.out else pred.with_name("RD.pred.dcm")
    try:
        res = export_rtdose(pred, out, args.dicom, case_json, keep_phi=args.keep_phi)
    except (DicomInputError, ValueError, FileNotFoundError) as exc:
        raise UserError(str(exc)) from None
    for w in res.warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(f"RTDOSE: {res.path.resolve()}")
    return 0


def _predictor(args: argparse.Namespace, overrides: dict[str, float] | None = None, **kwargs: Any) -> Any:
    from vmat_monai.engine.bundle import predictor_from_bundle
    from vmat_monai.pipeline import recorded_config

    config: dict[str, Any] = {"dose_prior": 0} if getattr(args, "no_dose_prior", False) else {}
    if getattr(args, "flip_tta", False):
        config["flip_tta"] = True
    try:
        variant = args.config
        if variant is None:
            variant = recorded_config(args.ckpt) or DEFAULT_PREDICT_CONFIG
            print(f"predict: --config {variant} (the checkpoint's training record, else the default)", flush=True)
        return predictor_from_bundle(
            args.ckpt, variant, config, constraint_overrides=overrides or {}, device=args.device, **kwargs
        )
    except (FileNotFoundError, KeyError, RuntimeError) as exc:
        raise UserError(str(exc).strip('"')) from None


def _cmd_predict(args: argparse.Namespace) -> int:
    from vmat_monai.constraints import parse_overrides

    try:  # keys are checked against the structure set's layout by the predictor
        overrides = parse_overrides(args.constraint, layout=None)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    predictor = _predictor(args, overrides, rtdose=args.rtdose, dicom_source=args.dicom)
    try:
        written = predictor.predict(args.source, args.out, args.split)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        raise UserError(str(exc).strip('"')) from None
    if overrides:
        print("what-if goals: " + ", ".join(f"{k}={v:g}" for k, v in overrides.items()))
    for w in written:
        print(f"prediction: {w.resolve()}")
    return 0


def _cmd_main(args: argparse.Namespace) -> int:
    """The main job: cohort -> check -> conversion -> training -> prediction -> evaluation -> what-if."""
    from vmat_monai.data.synthetic.check import check_cohort

    root = Path(args.workdir)
    dicom_dir, data_dir = root / "dicom", root / "data"
    if args.fresh:  # the main job's own outputs: start from nothing (synth --overwrite clears dicom/)
        import shutil

        for sub in ("data", "predictions", "what_if"):
            shutil.rmtree(root / sub, ignore_errors=True)
    print(f"[1/7] synthetic cohort: {args.cases} cases in {dicom_dir}", flush=True)
    synth_args = argparse.Namespace(
        out=str(dicom_dir),
        cases=args.cases,
        seed=args.seed,
        full_size=False,
        overwrite=args.fresh,
        resume=not args.fresh,
        workers=args.workers,
        plans_per_patient=args.plans_per_patient,
    )
    rc = _cmd_synth(synth_args)
    print("[2/7] reading the cohort back (pydicom, SimpleITK, rt-utils) and checking the plans", flush=True)
    report = check_cohort(dicom_dir)
    ok = sum(1 for r in report if r["ok"])
    for r in report:
        if not r["ok"]:
            print(f"CHECK FAILED {r['case_id']}: {'; '.join(r['problems'])}", file=sys.stderr)
    print(f"checked {ok}/{len(report)} cases OK")
    print(f"[3/7] converting DICOM-RT to case folders in {data_dir}", flush=True)
    conv_args = argparse.Namespace(
        input=str(dicom_dir),
        output=str(data_dir),
        structure_set="prostate_sib",
        mapping=None,
        allow_missing_dose=False,
        keep_phi=False,
        overwrite=args.fresh,
        seed=args.seed,
        workers=args.workers,
        format="dicom",
    )
    rc = _cmd_convert(conv_args) or rc
    if args.train_minutes <= 0:
        return rc or (0 if ok == len(report) else 1)
    return _model_stages(args, root, dicom_dir, data_dir) or rc or (0 if ok == len(report) else 1)


def _model_stages(args: argparse.Namespace, root: Path, dicom_dir: Path, data_dir: Path) -> int:
    """Stages 4-7 of the main job."""
    from vmat_monai.data.datasets import load_datalist
    from vmat_monai.evaluation.report import EvaluationSettings, evaluate_predictions
    from vmat_monai.pipeline import predict_held_out, train_bounded, what_if

    datalist = data_dir / "datalist.json"
    model_dir, pred_dir = root / "model", root / "predictions"
    if not (load_datalist(datalist, "validation") and load_datalist(datalist, "test")):
        raise UserError(f"{datalist}: no validation or test cases to hold out; generate more cases (--cases)")
    print(f"[4/7] training ({args.config} configuration) for {args.train_minutes:g} min in {model_dir}", flush=True)
    try:
        ckpt = train_bounded(datalist, model_dir, args.train_minutes, args.config, fresh=args.fresh)
    except RuntimeError as exc:
        raise UserError(str(exc)) from None
    print(f"[5/7] predicting the held-out cases (validation + test) into {pred_dir}", flush=True)
    pargs = argparse.Namespace(ckpt=ckpt, config=args.config, device=None)
    predict_held_out(_predictor(pargs, rtdose=True, dicom_source=dicom_dir), datalist, pred_dir, fresh=args.fresh)
    print("[6/7] evaluating against the planned doses", flush=True)
    with _progress("evaluate") as progress:
        summary = evaluate_predictions(pred_dir, datalist, pred_dir / "evaluation", EvaluationSettings(), progress)
    print_evaluation(summary)
    print("[7/7] what-if: the first test case with tighter rectum goals", flush=True)
    item = (load_datalist(datalist, "test") or load_datalist(datalist, "validation"))[0]
    overrides = {"rectum_V50": 0.25, "rectum_V60": 0.15, "rectum_V70": 0.08}
    res = what_if(lambda o: _predictor(pargs, o), item, overrides, root / "what_if")
    ch = res["change"]
    print(
        f"{item['case_id']}: rectum Dmean {res['own_goals']['Dmean']:.2f} -> {res['tightened_goals']['Dmean']:.2f} Gy "
        f"({ch['Dmean']:+.2f}), V70 {ch['V70']:+.2f} %-points, PTV70 D95 {res['ptv_d95_own']:.2f} -> "
        f"{res['ptv_d95_tightened']:.2f} Gy"
    )
    m = summary["metrics"]
    print("\nmain job summary (held-out synthetic cases):")
    for key, label, target in (
        ("MAE_body", "MAE in the body (Gy)", "<= 1.5"),
        ("gamma_pass_rate", "gamma 3%/3mm global (%)", ">= 90"),
        ("PTV70_D95_err", "PTV70 D95 error (Gy)", "|.| <= 1.5"),
        ("goals_agreement", "clinical goals, pred vs plan agree (%)", ""),
        ("goals_pass_rate_pred", "clinical goals met by prediction (%)", ""),
    ):
        s = m.get(key, {})
        if s.get("n"):
            print(f"  {label:<42}{s['mean']:>8.2f} ± {s['sd']:.2f}  (target {target or '-'})")
    out = Path(summary["output_dir"]).resolve()
    print(f"report: {out / 'metrics.csv'}, {out / 'summary.json'}\nfigures: {out / 'figures'}")
    print(f"predictions (NIfTI + RTDOSE): {pred_dir.resolve()}\nwhat-if: {(root / 'what_if').resolve()}")
    return 1 if summary["failed"] else 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vmat-monai", description="MONAI-based VMAT dose prediction pipeline")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("synth", help="generate a synthetic DICOM-RT prostate cohort")
    s.add_argument("--out", required=True, help="output folder (must be empty unless --overwrite/--resume)")
    s.add_argument("--cases", type=int, default=24, help="number of patients (default 24)")
    s.add_argument("--seed", type=int, default=0, help="cohort seed (default 0)")
    s.add_argument("--full-size", action="store_true", help="512x512 CT at 0.98 mm, 2.5 mm slices")
    s.add_argument("--overwrite", action="store_true", help="replace the contents of --out")
    s.add_argument("--resume", action="store_true", help="keep finished cases of an interrupted run")
    s.add_argument("--workers", type=int, default=1, help="parallel processes (default 1)")
    s.add_argument(
        "--plans-per-patient", type=int, default=1, help="plans with different goals per anatomy (default 1)"
    )
    s.set_defaults(func=_cmd_synth)

    c = sub.add_parser("convert", help="DICOM-RT folders -> case folders, datalist.json and a QA report")
    c.add_argument("--input", required=True, help="root folder of DICOM-RT exports (any layout)")
    c.add_argument("--output", required=True, help="data folder to write")
    c.add_argument(
        "--format",
        choices=["dicom", "npz", "openkbp"],
        default="dicom",
        help="dicom: DICOM-RT exports; npz: the original research code's NPZ cases (trusted files only); "
        "openkbp: the OpenKBP challenge's sparse-CSV patients (use --structure-set openkbp_hn)",
    )
    c.add_argument("--structure-set", default="prostate_sib", help="structure set name or JSON file")
    c.add_argument("--mapping", default=None, help="structure-name mapping JSON (default: oar_mapping.json)")
    c.add_argument("--allow-missing-dose", action="store_true", help="convert cases without RTDOSE (inference only)")
    c.add_argument("--keep-phi", action="store_true", help="keep patient identifiers (default: hashed ids)")
    c.add_argument("--overwrite", action="store_true", help="re-convert finished cases")
    c.add_argument("--seed", type=int, default=0, help="seed of the 80/10/10 split")
    c.add_argument("--workers", type=int, default=1)
    c.set_defaults(func=_cmd_convert)

    e = sub.add_parser("evaluate", help="predicted vs planned dose: metrics CSV, summary JSON and figures")
    e.add_argument("--pred", required=True, help="folder of predictions (<case_id>/dose_pred.nii.gz)")
    e.add_argument("--ref", required=True, help="converted data folder, one case folder, or a datalist.json")
    e.add_argument("--out", default=None, help="output folder (default: PRED/evaluation)")
    e.add_argument("--structure-set", default=None, help="structure set (default: the one in case.json)")
    e.add_argument("--gamma", default="3,3", help="gamma criteria DOSE_PERCENT,DISTANCE_MM (default 3,3)")
    e.add_argument("--gamma-cutoff", type=float, default=10.0, help="low-dose cutoff, %% of max (default 10)")
    e.add_argument("--local-gamma", action="store_true", help="local instead of global dose difference")
    e.add_argument("--max-gamma", type=float, default=2.0, help="search stops at this gamma (default 2)")
    e.add_argument("--interp-fraction", type=int, default=10, help="search step = DTA / this (default 10)")
    e.add_argument("--gamma-subset", type=int, default=None, help="evaluate gamma on N random voxels only")
    e.add_argument("--seed", type=int, default=0, help="seed of --gamma-subset")
    e.add_argument("--no-gamma", action="store_true", help="skip the gamma analysis")
    e.add_argument("--figures", choices=["all", "summary", "none"], default="all")
    e.set_defaults(func=_cmd_evaluate)

    x = sub.add_parser("export-rtdose", help="predicted dose NIfTI -> DICOM RTDOSE on the planning CT")
    x.add_argument("--pred", required=True, help="predicted dose NIfTI (dose_pred.nii.gz)")
    x.add_argument("--case", default=None, help="its converted case folder (picks the source study)")
    x.add_argument("--dicom", default=None, help="the DICOM-RT folder the case came from (references its UIDs)")
    x.add_argument("--out", default=None, help="output file (default: RD.pred.dcm beside --pred)")
    x.add_argument("--keep-phi", action="store_true", help="copy patient name/ID from the source")
    x.set_defaults(func=_cmd_export)

    r = sub.add_parser("predict", help="full-volume dose prediction with a trained checkpoint")
    r.add_argument("--ckpt", required=True, help="Lightning checkpoint (e.g. runs/default/model/checkpoints/last.ckpt)")
    r.add_argument("--source", required=True, help="datalist.json, case folder, folder of case folders, or DICOM-RT")
    r.add_argument("--out", required=True, help="output folder (<case_id>/dose_pred.nii.gz)")
    r.add_argument("--split", default="test", help="datalist split to predict (default test)")
    r.add_argument(
        "--config",
        default=None,
        help="bundle configs the checkpoint was trained with, comma-separated (cpu, residual, openkbp, default, JSON); "
        f"default: the ones in the training.json beside a main-job checkpoint, else {DEFAULT_PREDICT_CONFIG}",
    )
    r.add_argument(
        "--constraint",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="what-if goal in natural units, e.g. rectum_V70=0.10 (repeatable; keys in docs/CONSTRAINTS.md)",
    )
    r.add_argument("--rtdose", action="store_true", help="also write RD.pred.dcm (DICOM RTDOSE) per case")
    r.add_argument("--dicom", default=None, help="DICOM-RT folder the cases came from (RTDOSE references it)")
    r.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    r.add_argument(
        "--no-dose-prior",
        action="store_true",
        help="the checkpoint was trained without the arc dose prior channels (bundle: dose_prior 0)",
    )
    r.add_argument(
        "--flip-tta",
        action="store_true",
        help="average with the prediction of the left-right mirror image (bundle: flip_tta true; twice the time)",
    )
    r.set_defaults(func=_cmd_predict)

    m = sub.add_parser("main", help="run the main job on the embedded synthetic data")
    m.add_argument("--workdir", default="runs/default", help="where everything is written (default runs/default)")
    m.add_argument("--cases", type=int, default=32, help="synthetic plans (default 32)")
    m.add_argument(
        "--plans-per-patient", type=int, default=2, help="plans with different goals per anatomy (default 2)"
    )
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--workers", type=int, default=2)
    m.add_argument("--fresh", action="store_true", help="redo every stage instead of reusing finished work")
    m.add_argument(
        "--train-minutes", type=float, default=15.0, help="training time budget, minutes (default 15; 0: data only)"
    )
    m.add_argument(
        "--config",
        default=MAIN_CONFIG,
        help=f"bundle config overrides, comma-separated: bundle config names (cpu, residual, default) or JSON files "
        f"(default {MAIN_CONFIG})",
    )
    m.set_defaults(func=_cmd_main)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``vmat-monai`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
