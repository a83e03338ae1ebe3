"""The calibration of predicted uncertainties as a reliability curve: for each prediction folder
(a U-Net ensemble, diffusion samples), the % of body voxels whose error lies within k sigma, against
k, beside the curve of a calibrated model (a normal distribution: 68.3 % at k = 1, 95.4 % at 2).

Each ``label=folder`` (or a plain folder, labelled by its path; either side may hold "=", see
``vmat_monai.cli.common.labelled_path``) is a prediction folder whose cases hold ``dose_pred.nii.gz`` and
``dose_std.nii.gz`` (``predict --ckpt a,b,c`` or ``--samples N``); ``--data`` is the folder of
case folders holding the plans (``dose.nii.gz``, ``body.nii.gz``). Per-case curves are averaged
over the cases, as ``evaluate`` averages its calibration block.

    python scripts/calibration_curve.py "U-Net, 3 models=runs/demo2-s0/pred-ens3" \\
        "residual diffusion, 5 samples=runs/demo2-s0/pred-eq-diffres-s5k10" \\
        --data runs/demo2-s0/data --out docs/figures/calibration_curve.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

from vmat_monai.cli.common import per_labelled_folder
from vmat_monai.metrics.calibration import normal_within_pct, within_k_sigma_pct

K = np.round(np.linspace(0.0, 3.0, 31), 2)  # multiples of sigma on the curve


def folder_curve(pred_dir: Path, data_dir: Path, k: np.ndarray = K) -> tuple[np.ndarray, int]:
    """(mean over the cases of the % of body voxels within k sigma, number of cases) of one folder.

    Raises:
        FileNotFoundError: when no case of ``pred_dir`` has a ``dose_std.nii.gz`` with its plan in ``data_dir``.
    """
    curves = []
    for std_file in sorted(pred_dir.glob("*/dose_std.nii.gz")):
        case = std_file.parent.name
        plan_file, body_file = data_dir / case / "dose.nii.gz", data_dir / case / "body.nii.gz"
        if not plan_file.is_file():
            print(f"{case}: no plan at {plan_file}; skipped", file=sys.stderr)
            continue
        pred = np.asarray(nib.load(str(std_file.parent / "dose_pred.nii.gz")).dataobj, dtype=np.float32)
        sigma = np.asarray(nib.load(str(std_file)).dataobj, dtype=np.float32)
        plan = np.asarray(nib.load(str(plan_file)).dataobj, dtype=np.float32)
        body = np.asarray(nib.load(str(body_file)).dataobj) > 0 if body_file.is_file() else np.ones(plan.shape, bool)
        curves.append(within_k_sigma_pct(pred, plan, sigma, body, k))
    if not curves:
        raise FileNotFoundError(
            f"no case of {pred_dir} has dose_std.nii.gz and a plan in {data_dir}: predict with several "
            "checkpoints or --samples N > 1, and pass the folder of the converted cases as --data"
        )
    return np.mean(curves, axis=0), len(curves)


def plot(curves: dict[str, tuple[np.ndarray, int]], out: Path, k: np.ndarray = K) -> Path:
    """The reliability curves of ``curves`` (label -> (curve, cases)) and the calibrated one, as a PNG."""
    from matplotlib.figure import Figure

    from vmat_monai.evaluation.figures import save_figure

    fig = Figure(figsize=(5.5, 4.2), layout="constrained")
    ax = fig.subplots()
    ax.plot(k, normal_within_pct(k), "k--", lw=1.2, label="calibrated (normal)")
    for i, (label, (curve, n)) in enumerate(curves.items()):
        ax.plot(k, curve, lw=1.8, color=f"C{i}", label=f"{label} ({n} cases)")
    ax.set(xlabel="k (multiples of the predicted sd)", ylabel="body voxels with |error| ≤ k sd (%)", ylim=(0, 100))
    ax.set_xlim(0, float(k[-1]))
    ax.grid(alpha=0.3)
    ax.set_title("calibration of the predicted uncertainty")
    ax.legend(fontsize=8, loc="lower right")
    return save_figure(fig, out.with_suffix(""), formats=(out.suffix.lstrip(".") or "png",), dpi=110)[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", nargs="+", help="label=prediction folder (cases with dose_std.nii.gz)")
    ap.add_argument("--data", type=Path, required=True, help="folder of the case folders with the plans")
    ap.add_argument("--out", type=Path, default=Path("calibration_curve.png"), help="figure (PNG)")
    args = ap.parse_args()
    curves, failed = per_labelled_folder(args.folders, lambda folder: folder_curve(folder, args.data))
    if not curves:
        return 1
    i1, i2 = int(np.argmin(np.abs(K - 1))), int(np.argmin(np.abs(K - 2)))
    print("| predictions | cases | within 1 sd (%) | within 2 sd (%) |\n|---|---|---|---|")
    for label, (curve, n) in curves.items():
        print(f"| {label} | {n} | {curve[i1]:.1f} | {curve[i2]:.1f} |")
    print(f"| calibrated (normal) | | {normal_within_pct([1.0])[0]:.1f} | {normal_within_pct([2.0])[0]:.1f} |")
    print(f"figure: {plot(curves, args.out)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
