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
and print; each group of subcommands has its module here (data_commands, evaluation_commands,
predict_command, job_commands). Exit codes, the same for every command:

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

from vmat_monai.cli import data_commands, evaluation_commands, job_commands, predict_command
from vmat_monai.cli.common import EXIT_INTERRUPTED, EXIT_NOTHING, UserError

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The parser of every subcommand."""
    p = argparse.ArgumentParser(prog="vmat-monai", description="MONAI-based VMAT dose prediction pipeline")
    sub = p.add_subparsers(dest="command", required=True)
    for commands in (data_commands, evaluation_commands, predict_command, job_commands):
        commands.add_commands(sub)
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
