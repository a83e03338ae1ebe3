"""``vmat-monai demo`` and ``vmat-monai openkbp``: the end-to-end jobs."""

from __future__ import annotations

import argparse
from pathlib import Path

from vmat_monai.cli.common import UserError
from vmat_monai.workflows.demo import DEMO_CONFIGS
from vmat_monai.workflows.openkbp import OPENKBP_CONFIGS
from vmat_monai.workflows.text import tqdm_progress


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register this module's subcommands."""
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
    o.add_argument(
        "--config",
        default="",
        help="bundle configs (default, by --bundle: "
        + ", ".join(f"{configs} for {bundle}" for bundle, configs in OPENKBP_CONFIGS.items())
        + ")",
    )
    o.add_argument("--lever", default=None, help="more configs on top (model and predictions get their own folders)")
    o.add_argument("--workers", type=int, default=2)
    o.add_argument("--name", default="", help="suffix of the model-/predictions- folders (default: the levers' names)")
    o.add_argument(
        "--cache-dir",
        default=None,
        help="keep the preprocessed volumes in this folder and reuse them in later runs (skips ≈20 min per run)",
    )
    o.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    o.add_argument(
        "--bundle",
        choices=["vmat_dose_unet", "vmat_dose_diffusion"],
        default="vmat_dose_unet",
        help="the model family (default vmat_dose_unet; vmat_dose_diffusion samples with its configs' DDIM steps)",
    )
    o.set_defaults(func=_cmd_openkbp)


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
        bundle=args.bundle,
    )
    try:
        result = run_openkbp(opts, report=lambda line: print(line, flush=True))
    except (FileNotFoundError, RuntimeError, ValueError) as exc:
        raise UserError(str(exc)) from None
    print(f"submission files: {(result.prediction_dir / 'submission').resolve()}")
    return 1 if result.conversion["failed"] else 0
