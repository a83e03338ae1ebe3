"""The ``vmat-monai`` command: thin argument parsing over the library.

Subcommands:
    synth    generate a synthetic DICOM-RT prostate cohort
    convert  DICOM-RT folders -> case folders + datalist.json + QA report
    evaluate predicted doses vs planned doses: metrics CSV, summary JSON, figures
    export-rtdose  a predicted dose NIfTI -> DICOM RTDOSE
    predict  full-volume prediction with a trained checkpoint (what-if goals with --constraint)
    demo     the synthetic end-to-end demo (``main`` is its old name, kept as an alias)
    openkbp  the OpenKBP job: convert, train, predict and score the challenge's patients

The commands parse arguments, call the library (vmat_monai.workflows for the end-to-end jobs)
and print. Exit codes, the same for every command:

    0    everything done, for every case
    1    some cases failed (each is listed on stderr; the others are done)
    2    nothing usable: bad arguments, nothing found in the input, or every case failed
         (one line ``error: ...`` says what and what to do)
    130  interrupted (Ctrl-C); re-running resumes
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vmat_monai.workflows.text import cohort_lines, evaluation_lines, tqdm_progress

if TYPE_CHECKING:
    from vmat_monai.metrics.gamma import GammaOptions

__all__ = ["main"]

DEMO_CONFIGS = "cpu,residual"  # the demo's bundle configs (vmat_monai.workflows.demo.DEMO_CONFIGS)
DEFAULT_PREDICT_CONFIG = "cpu"  # predict, for a checkpoint without a training record
EXIT_OK, EXIT_SOME_FAILED, EXIT_NOTHING, EXIT_INTERRUPTED = 0, 1, 2, 130


def batch_exit_code(n_done: int, n_failed: int) -> int:
    """The exit code of a batch: 0 all done, 1 some failed, 2 every case failed."""
    if not n_failed:
        return EXIT_OK
    return EXIT_SOME_FAILED if n_done else EXIT_NOTHING


class UserError(Exception):
    """A problem with the user's input, reported on one line without a traceback."""


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
        with tqdm_progress("synth") as progress:
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
    for line in cohort_lines(manifest):
        print(line)
    print(f"cohort: {Path(args.out).resolve()} ({len(manifest['cases'])} cases)")
    for case, err in manifest["failed"].items():
        print(f"FAILED {case}: {err}", file=sys.stderr)
    return batch_exit_code(len(manifest["cases"]), len(manifest["failed"]))


def _cmd_convert(args: argparse.Namespace) -> int:
    from vmat_monai.data.convert import ConvertOptions, convert_tree
    from vmat_monai.errors import SourceInputError
    from vmat_monai.workflows.text import conversion_lines

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
        beam_protocol=args.beam_protocol,
        write_sources=not args.no_sources,
    )
    try:
        with tqdm_progress("convert") as progress:
            summary = convert_tree(args.input, args.output, opts, workers=args.workers, progress=progress)
    except (SourceInputError, ValueError, KeyError) as exc:
        raise UserError(str(exc).strip('"')) from None
    for line in conversion_lines(summary, Path(args.output)):
        print(line, file=sys.stderr if line.startswith("FAILED") else sys.stdout)
    code = batch_exit_code(summary["converted"] + summary["skipped"], summary["failed"])
    if code == EXIT_NOTHING:
        print(f"error: none of the {summary['n_studies']} studies could be converted (see above)", file=sys.stderr)
    return code


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
    """Per-case table and mean ± sd of the headline metrics; cases not evaluated on stderr."""
    lines, errors = evaluation_lines(summary)
    print("\n".join(lines))
    for line in errors:
        print(line, file=sys.stderr)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from vmat_monai.evaluation.report import EvaluationSettings, evaluate_predictions

    settings = EvaluationSettings(
        gamma=_gamma_options(args),
        with_gamma=not args.no_gamma,
        figures=args.figures,
        structure_set=args.structure_set,
    )
    try:
        with tqdm_progress("evaluate") as progress:
            summary = evaluate_predictions(args.pred, args.ref, args.out, settings, progress=progress)
    except (FileNotFoundError, ValueError) as exc:
        raise UserError(str(exc)) from None
    print_evaluation(summary)
    out = Path(summary["output_dir"]).resolve()
    print(f"metrics: {out / 'metrics.csv'}\nsummary: {out / 'summary.json'}")
    if args.figures != "none":
        print(f"figures: {out / 'figures'}")
    return batch_exit_code(summary["n_cases"], len(summary["failed"]))


def _cmd_export(args: argparse.Namespace) -> int:
    from vmat_monai.dicom.export import export_rtdose
    from vmat_monai.errors import SourceInputError

    pred = Path(args.pred)
    case_json = Path(args.case) / "case.json" if args.case else None
    if case_json is not None and not case_json.is_file():
        raise UserError(f"--case {args.case}: no case.json there; pass the converted case folder")
    out = Path(args.out) if args.out else pred.with_name("RD.pred.dcm")
    try:
        res = export_rtdose(pred, out, args.dicom, case_json, keep_phi=args.keep_phi)
    except (SourceInputError, ValueError, FileNotFoundError) as exc:
        raise UserError(str(exc)) from None
    for w in res.warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(f"RTDOSE: {res.path.resolve()}")
    return 0


def _predictor(args: argparse.Namespace, overrides: dict[str, float] | None = None, **kwargs: Any) -> Any:
    from vmat_monai.engine.bounded_training import recorded_configs
    from vmat_monai.engine.bundle import bundle_for_checkpoint, predictor_from_bundle, sampling_overrides
    from vmat_monai.engine.predict import checkpoint_list

    config: dict[str, Any] = {"prior_channels": 0} if args.no_dose_prior else {}
    try:
        bundle = args.bundle
        if bundle == "auto":
            bundle = bundle_for_checkpoint(args.ckpt)
            print(f"predict: --bundle {bundle} (the model family of {checkpoint_list(args.ckpt)[0]})", flush=True)
        config |= sampling_overrides(
            bundle,
            str(args.ckpt),
            samples=args.samples,
            ddim_steps=args.ddim_steps,
            eta=args.eta,
            sample_seed=args.sample_seed,
            save_samples=args.save_samples or None,
        )
        configs = args.config
        if configs is None:
            members = checkpoint_list(args.ckpt)
            records = {str(m): recorded_configs(m) for m in members}
            if len(set(records.values())) > 1:
                lines = ", ".join(f"{m} ({c or 'no training record'})" for m, c in records.items())
                raise ValueError(
                    f"the checkpoints were trained with different configurations: {lines}; an ensemble needs one "
                    "configuration (pass --config to force one)"
                )
            configs = records[str(members[0])] or DEFAULT_PREDICT_CONFIG
            print(f"predict: --config {configs} (the checkpoint's training record, else the default)", flush=True)
        return predictor_from_bundle(
            args.ckpt,
            configs,
            config,
            bundle,
            constraint_overrides=overrides or {},
            flip_tta=args.flip_tta,
            device=args.device,
            **kwargs,
        )
    except (FileNotFoundError, KeyError, RuntimeError, ValueError) as exc:
        raise UserError(str(exc).strip('"')) from None


def _cmd_predict(args: argparse.Namespace) -> int:
    from vmat_monai.constraints import parse_overrides

    try:  # keys are checked against the structure set's layout by the predictor
        overrides = parse_overrides(args.constraint, layout=None)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    predictor = _predictor(args, overrides, rtdose=args.rtdose, dicom_source=args.dicom)
    failed: dict[str, str] = {}

    def report_failure(case: str, message: str) -> None:
        failed[case] = message
        print(f"FAILED {case}: {message}", file=sys.stderr, flush=True)

    try:
        written = predictor.predict(args.source, args.out, args.split, on_error=report_failure)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        raise UserError(str(exc).strip('"')) from None
    if overrides:
        print("what-if goals: " + ", ".join(f"{k}={v:g}" for k, v in overrides.items()))
    for w in written:
        print(f"prediction: {w.resolve()}")
    code = batch_exit_code(len(written), len(failed))
    if failed:
        print(f"{len(failed)} case(s) not predicted: {', '.join(failed)}", file=sys.stderr)
    return code


def _cmd_demo(args: argparse.Namespace) -> int:
    from vmat_monai.workflows.demo import DemoOptions, run_demo

    opts = DemoOptions(
        workdir=Path(args.workdir),
        cases=args.cases,
        plans_per_patient=args.plans_per_patient,
        seed=args.seed,
        workers=args.workers,
        fresh=args.fresh,
        train_minutes=args.train_minutes,
        configs=args.config,
    )
    try:
        result = run_demo(opts, report=lambda line: print(line, flush=True), progress=tqdm_progress)
    except (FileExistsError, PermissionError, ValueError, RuntimeError) as exc:
        raise UserError(str(exc)) from None
    return result.exit_code


def _cmd_openkbp(args: argparse.Namespace) -> int:
    from vmat_monai.workflows.openkbp import OpenKBPOptions, run_openkbp

    opts = OpenKBPOptions(
        data_root=Path(args.data),
        workdir=Path(args.workdir),
        minutes=args.minutes,
        configs=args.config,
        lever=args.lever or "",
        workers=args.workers,
        name=args.name,
        cache_dir=Path(args.cache_dir) if args.cache_dir else None,
        seed=args.seed,
    )
    try:
        result = run_openkbp(opts, report=lambda line: print(line, flush=True))
    except (FileNotFoundError, RuntimeError, ValueError) as exc:
        raise UserError(str(exc)) from None
    print(f"submission files: {(result.prediction_dir / 'submission').resolve()}")
    return 1 if result.conversion["failed"] else 0


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
    c.add_argument(
        "--no-sources",
        action="store_true",
        help="do not write sources.csv (case id -> your folder, StudyInstanceUID), and remove an existing one",
    )
    c.add_argument("--overwrite", action="store_true", help="re-convert finished cases")
    c.add_argument("--seed", type=int, default=0, help="seed of the 80/10/10 split")
    c.add_argument(
        "--beam-protocol",
        default="arc360",
        help="beams of the dose prior for cases whose RTPLAN gives none: arc360 or openkbp_9field (a warning names "
        "those cases; docs/BEAM_PRIOR.md)",
    )
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
    r.add_argument(
        "--ckpt",
        required=True,
        help="Lightning checkpoint (e.g. runs/default/model/checkpoints/last.ckpt) or models/model.pt; several, "
        "comma-separated, for an ensemble (mean dose + dose_std.nii.gz; one configuration)",
    )
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
        help="the checkpoint was trained without the beam dose prior channels (bundle: prior_channels 0)",
    )
    r.add_argument(
        "--flip-tta",
        action="store_true",
        help="average with the prediction of the left-right mirror image (bundle: flip_tta true; twice the time)",
    )
    r.add_argument(
        "--bundle",
        choices=["auto", "vmat_dose_unet", "vmat_dose_diffusion"],
        default="auto",
        help="the model family (default auto: from the checkpoint)",
    )
    d = r.add_argument_group("diffusion models (vmat_dose_diffusion)")
    d.add_argument("--samples", type=int, default=None, help="DDIM samples per case (mean + dose_std.nii.gz)")
    d.add_argument("--ddim-steps", type=int, default=None, help="DDIM steps per sample (default: the config's)")
    d.add_argument("--eta", type=float, default=None, help="DDIM eta (0: deterministic given the seed)")
    d.add_argument("--sample-seed", type=int, default=None, help="seed of the first sample (sample s: seed + s)")
    d.add_argument("--save-samples", action="store_true", help="also write every sample (dose_samples.nii.gz)")
    r.set_defaults(func=_cmd_predict)

    m = sub.add_parser(
        "demo", aliases=["main"], help="the synthetic end-to-end demo: cohort, conversion, training, prediction, ..."
    )
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
        default=DEMO_CONFIGS,
        help=f"bundle config overrides, comma-separated: bundle config names (cpu, residual, default) or JSON files "
        f"(default {DEMO_CONFIGS})",
    )
    m.set_defaults(func=_cmd_demo)

    o = sub.add_parser("openkbp", help="OpenKBP job: convert, train, predict and score the challenge's patients")
    o.add_argument("--data", required=True, help="the challenge's provided-data folder (train-pats/, validation-pats/)")
    o.add_argument("--workdir", default="runs/openkbp", help="where everything is written (default runs/openkbp)")
    o.add_argument("--minutes", type=float, default=30.0, help="training budget, minutes (default 30)")
    o.add_argument("--config", default="cpu,openkbp", help="bundle configs (default cpu,openkbp)")
    o.add_argument("--lever", default=None, help="more configs on top (model and predictions get their own folders)")
    o.add_argument("--workers", type=int, default=2)
    o.add_argument("--name", default="", help="suffix of the model-/predictions- folders (default: the levers' names)")
    o.add_argument(
        "--cache-dir",
        default=None,
        help="keep the preprocessed volumes in this folder and reuse them in later runs (skips ≈20 min per run)",
    )
    o.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    o.set_defaults(func=_cmd_openkbp)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``vmat-monai`` console script."""
    from vmat_monai.third_party_noise import quiet_third_party

    quiet_third_party()
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_NOTHING
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
