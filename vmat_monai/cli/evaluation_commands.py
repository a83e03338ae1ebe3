"""``vmat-monai evaluate`` and ``vmat-monai export-rtdose``: predicted against planned dose; a prediction as RTDOSE."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from vmat_monai.cli.common import UserError, batch_exit_code
from vmat_monai.workflows.text import evaluation_lines, tqdm_progress

if TYPE_CHECKING:
    from vmat_monai.metrics.gamma import GammaOptions


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register this module's subcommands."""
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
