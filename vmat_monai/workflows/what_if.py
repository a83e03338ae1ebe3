"""What-if: one case predicted with its own clinical goals and with changed ones, side by side."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from vmat_monai.atomic import write_text_atomic
from vmat_monai.engine.predict import DosePredictor

__all__ = ["what_if"]


def what_if(
    predictor: DosePredictor,
    item: Mapping[str, Any],
    overrides: Mapping[str, float],
    out_dir: Path,
    structure: str = "Rectum",
) -> dict[str, Any]:
    """Predict one case with its own goals and with ``overrides`` (natural units, keys of the
    predictor's constraint layout); numbers and a figure for ``structure`` of its structure set.

    Writes ``what_if.json`` (DVH statistics of ``structure`` with both goal sets, their change,
    the primary target's D95) and ``what_if.png|pdf`` (DVHs of both predictions, axial
    difference) into ``out_dir``. The checkpoint is loaded once (the predictor's).
    """
    import nibabel as nib

    from vmat_monai.evaluation import figures as fg
    from vmat_monai.metrics.dvh import cumulative_dvh, dvh_statistics

    sset = predictor.inputs.structures
    if structure not in sset.channels:
        raise KeyError(f"what-if structure {structure!r} is not in the structure set {sset.name} ({sset.channels})")
    base, _ = predictor.predict_item(item, constraint_overrides={})
    tight, _ = predictor.predict_item(item, constraint_overrides=dict(overrides))
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
