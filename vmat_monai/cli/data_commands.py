"""``vmat-monai synth`` and ``vmat-monai convert``: a synthetic cohort; DICOM-RT exports -> case folders."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vmat_monai.cli.common import EXIT_NOTHING, UserError, batch_exit_code
from vmat_monai.workflows.text import cohort_lines, tqdm_progress


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register this module's subcommands."""
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


def _cmd_synth(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from vmat_monai.data.synthetic.cohort import CohortSettings
    from vmat_monai.data.synthetic.cohort_runner import generate_cohort

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
    from vmat_monai.data.convert import ConvertOptions
    from vmat_monai.data.convert_tree import convert_tree
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
