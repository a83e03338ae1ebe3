"""The OpenKBP job: convert the challenge's patients, train within a budget, predict the validation
patients, score them with the challenge's dose and DVH scores, and write the submission files.

Data: a folder holding ``train-pats/`` and ``validation-pats/`` (the challenge's layout). Work
folder layout: ``data/`` (case folders, datalist), ``model[-<name>]/`` (training), and
``predictions[-<name>]/`` (NIfTI per patient, ``submission/pt_N.csv`` and ``scores.json``: the
scores with the run's budget, seed, bundle and configs); ``<name>`` is ``--name``, or the levers'
file stems. A re-run resumes: training from its last checkpoint, prediction with the patients
not yet predicted by that checkpoint. With ``cache_dir`` the preprocessed training and validation
volumes are kept on disk there, so further runs on the same data (another budget, seed or lever
that leaves the preprocessing alone) skip the ≈20 minutes of preprocessing of the 169 patients.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vmat_monai.atomic import write_text_atomic
from vmat_monai.workflows.text import Report

__all__ = [
    "OPENKBP_CONFIGS",
    "SCORES_FILE",
    "OpenKBPOptions",
    "OpenKBPResult",
    "OpenKBPScores",
    "openkbp_scores",
    "run_openkbp",
]

# the job's default configs per model family: the CPU network, the OpenKBP data (structure set, grid, beam
# prior) and, for the U-Net, the CPU-only OpenKBP training choices (48³ patches centred in the body; the
# GPU configuration keeps the base 128³ patches)
OPENKBP_CONFIGS = {"vmat_dose_unet": "cpu,openkbp,openkbp_cpu", "vmat_dose_diffusion": "cpu,openkbp"}
SCORES_FILE = "scores.json"  # in the predictions folder: what the job scored, with what


@dataclass(frozen=True)
class OpenKBPOptions:
    """Options of the OpenKBP job.

    Args:
        data_root: the challenge's provided-data folder (``train-pats/``, ``validation-pats/``).
        workdir: where conversion, model and predictions go (finished stages are reused).
        minutes: training budget, minutes.
        configs: bundle configs stacked on the bundle's base configs; empty: the family's default
            (``OPENKBP_CONFIGS[bundle]``).
        lever: more configs on top of ``configs`` (names or JSON files, comma-separated); the
            model and predictions then go to ``model-<stems>`` / ``predictions-<stems>``.
        workers: conversion processes.
        name: suffix of the model and prediction folders (default: the levers' file stems).
        cache_dir: folder of a disk cache shared between runs (bundle ``cache: memory+disk``);
            None: the memory cache only.
        seed: the training's random seed (bundle ``seed``).
        bundle: the model family's bundle, ``vmat_dose_unet`` or ``vmat_dose_diffusion`` (its
            ``configs`` of the same names; predictions sample with its configs' DDIM settings).
    """

    data_root: Path
    workdir: Path = Path("runs/openkbp")
    minutes: float = 30.0
    configs: str = ""
    lever: str = ""
    workers: int = 2
    name: str = ""
    cache_dir: Path | None = None
    seed: int = 0
    bundle: str = "vmat_dose_unet"


@dataclass(frozen=True)
class OpenKBPResult:
    """Scores (Gy) of the validation patients and what the job did."""

    dose_score: float
    dvh_score: float
    n_patients: int
    conversion: dict[str, Any]
    convert_seconds: float
    predict_seconds_per_patient: float
    training_summary: str
    configs: str
    prediction_dir: Path
    breakdown: dict[str, Any] = field(default_factory=dict)

    def record(self, opts: OpenKBPOptions) -> dict[str, Any]:
        """The scores with the run's settings, as written to ``scores.json`` (no patient data)."""
        return {
            "dose_score_gy": self.dose_score,
            "dvh_score_gy": self.dvh_score,
            "n_patients": self.n_patients,
            "bundle": opts.bundle,
            "configs": self.configs,
            "minutes": opts.minutes,
            "seed": opts.seed,
            "training": self.training_summary,
            "predict_seconds_per_patient": round(self.predict_seconds_per_patient, 2),
            **self.breakdown,
        }


@dataclass(frozen=True)
class OpenKBPScores:
    """The challenge's scores of a predictions folder and where they come from.

    ``dvh_parts``: the DVH score by kind of metric (:func:`vmat_monai.metrics.openkbp.dvh_score_parts`);
    ``regions``: the dose error inside the targets, in their fall-off (20 mm) and beyond, as the mean
    over patients of :func:`vmat_monai.metrics.dose_error.errors_by_target_distance` on the
    possible-dose mask (``MAE_<region>``, ``ME_<region>``, ``share_<region>``).
    """

    dose_score: float
    dvh_score: float
    dvh_parts: dict[str, dict[str, float]]
    regions: dict[str, float]

    def record(self) -> dict[str, Any]:
        """The breakdown as written to ``scores.json`` (rounded to 0.001)."""
        return {
            "dvh_score_parts": {k: {n: round(x, 3) for n, x in v.items()} for k, v in self.dvh_parts.items()},
            "dose_error_by_region": {k: round(v, 3) for k, v in self.regions.items()},
        }


def openkbp_scores(pred_dir: Path, items: list[dict[str, Any]]) -> OpenKBPScores:
    """The challenge's dose score (mean over patients of the MAE in the possible-dose mask, Gy) and
    DVH score (pooled over patients, Gy) of ``pred_dir/<case_id>/dose_pred.nii.gz`` against the
    datalist ``items`` (any predictions folder: one model, an ensemble, another tool's NIfTI), with
    their breakdown (:class:`OpenKBPScores`)."""
    import nibabel as nib
    import numpy as np

    from vmat_monai.metrics.dose_error import errors_by_target_distance
    from vmat_monai.metrics.openkbp import dose_score, dvh_metrics, dvh_score, dvh_score_parts
    from vmat_monai.structures import OPENKBP_HN

    scores, pred_m, ref_m, regions = [], [], [], []
    targets = list(OPENKBP_HN.targets)
    for it in items:
        pred = np.asarray(nib.load(str(Path(pred_dir) / it["case_id"] / "dose_pred.nii.gz")).dataobj)
        ref = np.asarray(nib.load(it["dose"]).dataobj)
        pdm = np.asarray(nib.load(it["body"]).dataobj) > 0
        m = np.asarray(nib.load(it["masks"]).dataobj) > 0
        masks = {name: m[..., i] for i, name in enumerate(OPENKBP_HN.channels)}
        vox = nib.load(it["dose"]).header.get_zooms()[:3]
        scores.append(dose_score(pred, ref, pdm))
        pred_m.append(dvh_metrics(pred, masks, vox, targets))
        ref_m.append(dvh_metrics(ref, masks, vox, targets))
        union = np.any([masks[t] for t in targets], axis=0)
        regions.append(errors_by_target_distance(pred, ref, union, pdm, vox))
    region_means = {k: float(np.nanmean([r[k] for r in regions])) for k in regions[0]} if regions else {}
    return OpenKBPScores(
        dose_score=float(np.mean(scores)),
        dvh_score=float(dvh_score(pred_m, ref_m)),
        dvh_parts=dvh_score_parts(pred_m, ref_m),
        regions=region_means,
    )


def _recorded_predict_seconds(pred_dir: Path) -> float:
    """The prediction time per patient that ``pred_dir``'s scores record (0 when none is readable)."""
    try:
        return float(json.loads((pred_dir / SCORES_FILE).read_text())["predict_seconds_per_patient"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0.0


def run_openkbp(opts: OpenKBPOptions, report: Report = print) -> OpenKBPResult:
    """Run the job (see the module docstring); returns the challenge's scores on the validation patients.

    Raises:
        FileNotFoundError: when ``opts.data_root`` is not a folder.
    """
    from vmat_monai.data.convert import ConvertOptions
    from vmat_monai.data.convert_tree import convert_tree
    from vmat_monai.data.datasets import load_datalist
    from vmat_monai.engine.bounded_training import train_bounded
    from vmat_monai.engine.bundle import FAMILY_BUNDLE, config_entries, predictor_from_bundle

    if opts.bundle not in FAMILY_BUNDLE.values():
        raise ValueError(f"bundle {opts.bundle!r} unknown: use one of {', '.join(FAMILY_BUNDLE.values())}")
    src, work = Path(opts.data_root), Path(opts.workdir)
    if not src.is_dir():
        raise FileNotFoundError(f"{src} not found: pass the OpenKBP provided-data folder (the one holding train-pats/)")
    report(f"OpenKBP: converting {src} into {work / 'data'}")
    t0 = time.perf_counter()
    conv = convert_tree(
        src, work / "data", ConvertOptions(structure_set="openkbp_hn", source_format="openkbp"), opts.workers
    )
    convert_s = time.perf_counter() - t0
    datalist = work / "data" / "datalist.json"
    levers = config_entries(opts.lever)
    configs = ",".join([*config_entries(opts.configs or OPENKBP_CONFIGS[opts.bundle]), *levers])
    stem = opts.name or "+".join(Path(v).stem for v in levers)
    tag = f"-{stem}" if stem else ""
    extra = ["--seed", str(opts.seed)]
    if opts.cache_dir is not None:
        extra += ["--cache", "memory+disk", "--cache_dir", str(opts.cache_dir)]
    model_dir = work / f"model{tag}"
    report(f"OpenKBP: training {opts.bundle} ({configs}, seed {opts.seed}) for {opts.minutes:g} min in {model_dir}")
    ckpt = train_bounded(datalist, model_dir, opts.minutes, configs, extra=extra, bundle=opts.bundle)
    predictor = predictor_from_bundle(ckpt, configs, bundle=opts.bundle, openkbp_submission=True)
    items = load_datalist(datalist, "test")
    pred_dir = work / f"predictions{tag}"
    t0 = time.perf_counter()
    predictor.predict_items(items, pred_dir)  # a re-run reuses the patients predicted by this checkpoint
    predicted = len(items) - predictor.reused
    predict_s = (time.perf_counter() - t0) / predicted if predicted else _recorded_predict_seconds(pred_dir)
    scored = openkbp_scores(pred_dir, items)
    record = json.loads((model_dir / "training.json").read_text())
    result = OpenKBPResult(
        dose_score=scored.dose_score,
        dvh_score=scored.dvh_score,
        breakdown=scored.record(),
        n_patients=len(items),
        conversion=conv,
        convert_seconds=convert_s,
        predict_seconds_per_patient=predict_s,
        training_summary=str(record["summary"]),
        configs=configs,
        prediction_dir=pred_dir,
    )
    write_text_atomic(pred_dir / SCORES_FILE, json.dumps(result.record(opts), indent=2) + "\n")
    report(
        f"OpenKBP: dose score {result.dose_score:.3f} Gy, DVH score {result.dvh_score:.3f} Gy ({len(items)} patients)"
    )
    return result
