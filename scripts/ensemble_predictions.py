"""Average the predictions of models trained with different configurations (an ensemble that
``vmat-monai predict --ckpt a,b,c`` cannot build, since its members share one configuration).

For every case predicted in all the given folders: ``OUT/<case_id>/dose_pred.nii.gz`` = the
voxel-wise mean (Gy), ``dose_std.nii.gz`` = the per-voxel standard deviation (ddof 1), and
``prediction.json`` naming the members; then ``vmat-monai evaluate --pred OUT`` reports the
accuracy of the mean and the calibration of the sd (docs/EVALUATION.md).

    python scripts/ensemble_predictions.py runs/openkbp/predictions runs/openkbp/predictions-arc_prior \\
        --out runs/openkbp/predictions-ensemble
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

from vmat_monai.atomic import atomic_file, write_text_atomic

PRED, STD = "dose_pred.nii.gz", "dose_std.nii.gz"


def ensemble(folders: list[Path], out: Path) -> list[str]:
    """Write the mean and sd of every case present in all ``folders``; returns the case ids."""
    common = set.intersection(*({p.parent.name for p in f.glob(f"*/{PRED}")} for f in folders))
    for cid in sorted(common):
        imgs = [nib.load(str(f / cid / PRED)) for f in folders]
        if any(i.shape != imgs[0].shape or not np.allclose(i.affine, imgs[0].affine, atol=1e-3) for i in imgs):
            raise ValueError(f"{cid}: the members' predictions lie on different grids; predict from one data folder")
        doses = np.stack([np.asarray(i.dataobj, dtype=np.float32) for i in imgs])
        with atomic_file(out / cid / STD) as tmp:
            nib.save(nib.Nifti1Image(doses.std(0, ddof=1).astype(np.float32), imgs[0].affine), str(tmp))
        with atomic_file(out / cid / PRED) as tmp:
            nib.save(nib.Nifti1Image(doses.mean(0).astype(np.float32), imgs[0].affine), str(tmp))
        record = {"case_id": cid, "members": [str(f / cid / PRED) for f in folders]}
        write_text_atomic(out / cid / "prediction.json", json.dumps(record, indent=2))
    return sorted(common)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", nargs="+", type=Path, help="prediction folders (<case_id>/dose_pred.nii.gz)")
    ap.add_argument("--out", required=True, type=Path, help="output folder")
    args = ap.parse_args()
    if len(args.folders) < 2:
        print("an ensemble needs at least two prediction folders", file=sys.stderr)
        return 2
    cases = ensemble(args.folders, args.out)
    if not cases:
        print("no case is predicted in every folder", file=sys.stderr)
        return 2
    print(f"{len(cases)} cases averaged over {len(args.folders)} members into {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
