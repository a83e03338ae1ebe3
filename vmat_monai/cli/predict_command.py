"""``vmat-monai predict``: full-volume prediction with trained checkpoints (U-Net, ensembles, diffusion)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from vmat_monai.cli.common import UserError, batch_exit_code

DEFAULT_PREDICT_CONFIG = "cpu"  # predict, for a checkpoint without a training record


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register this module's subcommands."""
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
    r.add_argument(
        "--overwrite",
        action="store_true",
        help="predict every case again (default: reuse the cases whose prediction.json records the same "
        "checkpoints, settings, goals and inputs)",
    )
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


def _predictor(args: argparse.Namespace, overrides: dict[str, float] | None = None, **kwargs: Any) -> Any:
    from vmat_monai.engine.bounded_training import configs_changed_since_training, recorded_configs
    from vmat_monai.engine.bundle import bundle_for_checkpoint, predictor_from_bundle, sampling_overrides
    from vmat_monai.engine.checkpoint_weights import checkpoint_list

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
        for member in checkpoint_list(args.ckpt):
            if configs_changed_since_training(member, configs, bundle):
                hint = (  # the change that alters a trained model's inputs without changing their shape
                    "; since 0.8.5 configs/openkbp.json builds the prior from each case's nine fields, not a full "
                    "arc: a model trained before on it without a prior lever needs, last in --config, a JSON file of "
                    '{"prior_protocol": "arc360", "prior_source": "protocol"} (scripts/levers/openkbp_arc.json)'
                    if "openkbp" in configs
                    else ""
                )
                print(
                    f"predict: warning: {member} was not trained with the {configs!r} configs as they read now (its "
                    "training.json's config_sha256: another --config, or the configs changed since); the inputs are "
                    f"built by today's; the {bundle} bundle's configs/metadata.json changelog lists the changes{hint}",
                    file=sys.stderr,
                    flush=True,
                )
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
        written = predictor.predict(
            args.source, args.out, args.split, on_error=report_failure, resume=not args.overwrite
        )
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
