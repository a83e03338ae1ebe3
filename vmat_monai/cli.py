"""The ``vmat-monai`` command: thin argument parsing over the library.

Subcommands:
    synth    generate a synthetic DICOM-RT prostate cohort
    convert  DICOM-RT folders -> case folders + datalist.json + QA report
    main     the main job on the embedded default data (synthetic cohort)

Errors a user can fix are reported on one line (``error: ...``) with a non-zero exit.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

__all__ = ["main"]


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
    from vmat_monai.data.synthetic.cohort import CohortSettings, generate_cohort

    if args.cases < 1:
        raise UserError(f"--cases must be at least 1 (got {args.cases})")
    if args.workers < 1:
        raise UserError(f"--workers must be at least 1 (got {args.workers})")
    try:
        with _progress("synth") as progress:
            manifest = generate_cohort(
                args.out,
                args.cases,
                seed=args.seed,
                settings=CohortSettings.full_size() if args.full_size else CohortSettings(),
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


def _cmd_main(args: argparse.Namespace) -> int:
    """The main job: synthetic cohort -> read-back check -> conversion (grows with the pipeline)."""
    from vmat_monai.data.synthetic.check import check_cohort

    root = Path(args.workdir)
    dicom_dir, data_dir = root / "dicom", root / "data"
    print(f"[1/3] synthetic cohort: {args.cases} cases in {dicom_dir}", flush=True)
    synth_args = argparse.Namespace(
        out=str(dicom_dir),
        cases=args.cases,
        seed=args.seed,
        full_size=False,
        overwrite=args.fresh,
        resume=not args.fresh,
        workers=args.workers,
    )
    rc = _cmd_synth(synth_args)
    print("[2/3] reading the cohort back (pydicom, SimpleITK, rt-utils) and checking the plans", flush=True)
    report = check_cohort(dicom_dir)
    ok = sum(1 for r in report if r["ok"])
    for r in report:
        if not r["ok"]:
            print(f"CHECK FAILED {r['case_id']}: {'; '.join(r['problems'])}", file=sys.stderr)
    print(f"checked {ok}/{len(report)} cases OK")
    print(f"[3/3] converting DICOM-RT to case folders in {data_dir}", flush=True)
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
    return rc or (0 if ok == len(report) else 1)


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
    s.set_defaults(func=_cmd_synth)

    c = sub.add_parser("convert", help="DICOM-RT folders -> case folders, datalist.json and a QA report")
    c.add_argument("--input", required=True, help="root folder of DICOM-RT exports (any layout)")
    c.add_argument("--output", required=True, help="data folder to write")
    c.add_argument(
        "--format",
        choices=["dicom", "npz"],
        default="dicom",
        help="dicom: DICOM-RT exports; npz: the original research code's NPZ cases (trusted files only)",
    )
    c.add_argument("--structure-set", default="prostate_sib", help="structure set name or JSON file")
    c.add_argument("--mapping", default=None, help="structure-name mapping JSON (default: oar_mapping.json)")
    c.add_argument("--allow-missing-dose", action="store_true", help="convert cases without RTDOSE (inference only)")
    c.add_argument("--keep-phi", action="store_true", help="keep patient identifiers (default: hashed ids)")
    c.add_argument("--overwrite", action="store_true", help="re-convert finished cases")
    c.add_argument("--seed", type=int, default=0, help="seed of the 80/10/10 split")
    c.add_argument("--workers", type=int, default=1)
    c.set_defaults(func=_cmd_convert)

    m = sub.add_parser("main", help="run the main job on the embedded synthetic data")
    m.add_argument("--workdir", default="runs/default", help="where everything is written (default runs/default)")
    m.add_argument("--cases", type=int, default=24, help="synthetic patients (default 24)")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--workers", type=int, default=2)
    m.add_argument("--fresh", action="store_true", help="redo every stage instead of reusing finished work")
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
