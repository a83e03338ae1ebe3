"""The main job's model stages: bounded CPU training through the bundle, prediction, evaluation, what-if.

Each stage reuses what an earlier run finished (a finished training leaves ``training.json``
beside its checkpoints; predictions newer than the checkpoint are kept) unless ``fresh``.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vmat_monai.atomic import write_text_atomic
from vmat_monai.engine.bundle import absolute_variant, bundle_dir, config_files

__all__ = ["predict_held_out", "recorded_config", "train_bounded", "what_if"]

TRAINING_RECORD = "training.json"


def _configs_digest(files: Sequence[str]) -> str:
    """SHA-256 of the training configs' contents (``config_files("train", variant)``)."""
    return hashlib.sha256(b"".join(Path(f).read_bytes() for f in files)).hexdigest()


def recorded_config(ckpt_path: str | Path) -> str | None:
    """The ``--config`` a checkpoint of :func:`train_bounded` was trained with, from the ``training.json``
    beside its ``checkpoints`` folder; None when there is no record (e.g. a bundle run of your own)."""
    ckpt = Path(ckpt_path)
    for folder in (ckpt.parent, ckpt.parent.parent):
        record = folder / TRAINING_RECORD
        if record.is_file():
            try:
                variant = json.loads(record.read_text()).get("variant")
            except (OSError, ValueError) as exc:
                raise RuntimeError(f"{record} is unreadable ({exc}); pass --config explicitly") from None
            return str(variant) if variant else None
    return None


def train_bounded(
    datalist: Path,
    out_dir: Path,
    minutes: float,
    variant: str = "cpu",
    learning_rate: float | None = None,
    fresh: bool = False,
    extra: Sequence[str] = (),
) -> Path:
    """Train with ``monai.bundle run training`` for at most ``minutes`` of training time.

    The learning rate follows a cosine over the time budget. An interrupted run resumes from
    ``last.ckpt`` (Lightning keeps the elapsed time in it). Returns the path of ``last.ckpt``.
    """
    ckpt = out_dir / "checkpoints" / "last.ckpt"
    record = out_dir / TRAINING_RECORD
    config_paths = config_files("train", variant)
    digest = _configs_digest(config_paths)
    if record.is_file() and ckpt.is_file() and not fresh:
        done = json.loads(record.read_text())
        if done.get("variant") not in (None, variant, absolute_variant(variant)):
            try:  # advise reusing it only when its configs are still the ones it was trained with
                same = _configs_digest(config_files("train", done["variant"])) == done.get("config_sha256")
            except FileNotFoundError:
                same = False
            reuse = f"pass --config {done['variant']} to reuse it, or " if same else ""
            raise RuntimeError(
                f"{ckpt} was trained with --config {done['variant']}, not {variant}: {reuse}--fresh to train "
                f"again with {variant}"
            )
        if done.get("config_sha256") != digest:  # a record without it predates the check: older configs
            raise RuntimeError(
                f"{ckpt} was trained with another version of the {variant!r} configuration (the bundle's configs "
                "changed since, e.g. the arc dose prior channel); re-run with --fresh to train again"
            )
        print(f"training: reusing {ckpt} ({done['summary']})", flush=True)
        return ckpt
    if fresh and out_dir.exists():
        import shutil

        shutil.rmtree(out_dir)
    seconds = round(minutes * 60)
    hh, rest = divmod(seconds, 3600)
    mm, ss = divmod(rest, 60)
    files = ",".join(f"'{f}'" for f in config_paths)
    cmd = [
        sys.executable,
        "-m",
        "monai.bundle",
        "run",
        "training",
        "--config_file",
        f"[{files}]",
        "--datalist",
        str(datalist),
        "--output_dir",
        str(out_dir),
        "--epochs",
        "100000",
        "--max_time",
        f"00:{hh:02d}:{mm:02d}:{ss:02d}",
        "--schedule_seconds",
        str(seconds),
        *(["--learning_rate", str(learning_rate)] if learning_rate else []),
        *(["--ckpt_path", str(ckpt)] if ckpt.is_file() else []),
        *extra,
    ]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=bundle_dir().parents[1])
    wall = time.perf_counter() - t0
    metrics = sorted(out_dir.glob("csv/version_*/metrics.csv"))
    epochs = 0
    if metrics:
        lines = metrics[-1].read_text().splitlines()
        epochs = len({line.split(",")[0] for line in lines[1:]})
    summary = f"{wall / 60:.1f} min wall, {epochs} epochs in the last session, budget {minutes:g} min"
    done = {"summary": summary, "variant": absolute_variant(variant), "minutes": minutes, "config_sha256": digest}
    write_text_atomic(record, json.dumps(done, indent=2))
    return ckpt


def predict_held_out(
    predictor: Any, datalist: Path, out_dir: Path, splits: Sequence[str] = ("validation", "test"), fresh: bool = False
) -> list[Path]:
    """Predict the cases of ``splits`` (never trained on); keeps predictions newer than the checkpoint."""
    from vmat_monai.data.datasets import load_datalist
    from vmat_monai.engine.predict import PRED_NAME

    items = [it for s in splits for it in load_datalist(datalist, s)]
    ckpt_time = Path(predictor.ckpt_path).stat().st_mtime
    todo = [
        it
        for it in items
        if fresh
        or not (out_dir / it["case_id"] / PRED_NAME).is_file()
        or (out_dir / it["case_id"] / PRED_NAME).stat().st_mtime < ckpt_time
    ]
    if len(todo) < len(items):
        print(f"predict: reusing {len(items) - len(todo)} predictions newer than the checkpoint", flush=True)
    predictor.predict_items(todo, out_dir)
    return [out_dir / it["case_id"] / PRED_NAME for it in items]


def what_if(
    predictor_factory: Any,
    item: Mapping[str, Any],
    overrides: Mapping[str, float],
    out_dir: Path,
    structure: str = "Rectum",
) -> dict[str, Any]:
    """Predict one case with its own goals and with ``overrides``; figure and numbers for ``structure``.

    ``predictor_factory(overrides)`` returns a predictor. Writes ``what_if.json`` and
    ``what_if.png|pdf`` (DVHs of both predictions, axial difference) into ``out_dir``.
    """
    import nibabel as nib

    from vmat_monai.evaluation import figures as fg
    from vmat_monai.metrics.dvh import cumulative_dvh, dvh_statistics
    from vmat_monai.structures import get_structure_set

    base, _ = predictor_factory({}).predict_item(item)
    tight, _ = predictor_factory(dict(overrides)).predict_item(item)
    sset = get_structure_set("prostate_sib")
    masks = np.asarray(nib.load(item["masks"]).dataobj) > 0
    ct_img = nib.load(item["image"])
    voxel_cc = float(np.prod(ct_img.header.get_zooms()[:3])) / 1000.0
    m = masks[..., sset.index(structure)]
    stats = ("Dmean", "V50", "V60", "V70", "D0.03cc")
    a = dvh_statistics(base, m, voxel_cc, stats)
    b = dvh_statistics(tight, m, voxel_cc, stats)
    ptv = masks[..., sset.index(sset.primary_target)]
    result = {
        "case_id": item["case_id"],
        "overrides": dict(overrides),
        "structure": structure,
        "own_goals": a,
        "tightened_goals": b,
        "change": {k: b[k] - a[k] for k in stats},
        "ptv_d95_own": dvh_statistics(base, ptv, voxel_cc, ("D95",))["D95"],
        "ptv_d95_tightened": dvh_statistics(tight, ptv, voxel_cc, ("D95",))["D95"],
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / "what_if.json", json.dumps(result, indent=2))
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.6), layout="constrained")
    top = float(max(base[m].max(), tight[m].max()))
    for dose, ls, label in ((base, "-", "own goals"), (tight, "--", "tightened goals")):
        h = cumulative_dvh(dose[m], np.ones(int(m.sum())), voxel_cc, max_gy=top)
        ax1.plot(h.dose_gy, h.volume_percent, ls=ls, color=fg.OKABE_ITO[1], label=f"{structure}, {label}")
        hp = cumulative_dvh(dose[ptv], np.ones(int(ptv.sum())), voxel_cc)
        ax1.plot(hp.dose_gy, hp.volume_percent, ls=ls, color=fg.OKABE_ITO[0], label=f"{sset.primary_target}, {label}")
    ax1.set(xlabel="dose (Gy)", ylabel="volume (%)", ylim=(0, 102), xlim=(0, None))
    ax1.grid(alpha=0.3)
    ax1.legend(fontsize=8, frameon=False)
    goals = ", ".join(f"{k}={v:g}" for k, v in overrides.items())
    ax1.set_title(f"{structure} Dmean {a['Dmean']:.1f} → {b['Dmean']:.1f} Gy")
    centre = fg.centre_of(m, m.shape)
    ct = np.asarray(ct_img.dataobj, dtype=np.float32)
    diff = np.ma.masked_where((base < 1.0) & (tight < 1.0), tight - base)
    lim = max(float(np.abs(diff).max()), 0.5)
    im = fg.draw_slice(
        ax2, ct, diff, {sset.primary_target: ptv, structure: m}, ct_img.header.get_zooms()[:3], "axial", centre,
        cmap="RdBu_r", vmin=-lim, vmax=lim,
    )  # fmt: skip
    fig.colorbar(im, ax=ax2, label="tightened - own (Gy)")
    ax2.set_title("axial: prediction difference")
    fig.suptitle(f"{item['case_id']}: what-if {goals}")
    fg.save_figure(fig, out_dir / "what_if")
    return result
