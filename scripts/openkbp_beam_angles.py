"""Confirm the OpenKBP beam arrangement from the dose distributions (docs/BEAM_PRIOR.md).

For each converted OpenKBP case, the beam dose prior is computed for candidate arrangements:
nine equispaced coplanar static fields starting at ``offset`` degrees (offset 0, 5, ..., 35:
every distinct rotation of a nine-field set) and one full arc. Each candidate is scored by the
Pearson correlation between the prior and the planned dose outside the targets (more than 10 mm
from every target, inside the body, in the slices the targets span): that is where the beams'
paths show and the optimiser's modulation matters least. The arrangement that the plans were
made with should win in (nearly) every patient. Offset 20 is the same set turned by 180°, so
a sign error in the gantry convention would show as offset 20 winning.

    python scripts/openkbp_beam_angles.py runs/openkbp/data [--max-cases N]
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, Orientationd
from scipy import ndimage
from tqdm import tqdm

from vmat_monai.transforms import Beam, BeamArrangement, BeamDosePrior, protocol

KEYS = ["image", "dose", "masks", "body"]
FILES = {"image": "ct.nii.gz", "dose": "dose.nii.gz", "masks": "masks.nii.gz", "body": "body.nii.gz"}
LEVELS = {0: 70.0, 1: 63.0, 2: 56.0}  # PTV70, PTV63, PTV56 channels of the openkbp_hn set


def candidates() -> dict[str, BeamArrangement]:
    """Nine-field sets at every distinct offset, and a full arc."""
    out = {
        f"9 fields from {o:g} deg": BeamArrangement(
            tuple(Beam(o + 40.0 * k, o + 40.0 * k) for k in range(9)), f"candidate:{o:g}"
        )
        for o in np.arange(0.0, 40.0, 5.0)
    }
    out["full arc"] = protocol("arc360")
    return out


def scores(case: Path, arrangements: dict[str, BeamArrangement]) -> dict[str, float]:
    """Correlation of each candidate's prior with the planned dose outside the targets."""
    chain = Compose(
        [LoadImaged(KEYS, image_only=True), EnsureChannelFirstd(KEYS), Orientationd(KEYS, axcodes="RAS", labels=None)]
    )
    d = chain({k: str(case / f) for k, f in FILES.items()})
    masks = d["masks"].numpy() > 0
    present = [c for c in LEVELS if masks[c].any()]
    targets = masks[present].any(0)
    sp = np.abs(np.diag(d["dose"].affine.numpy())[:3])
    dist = ndimage.distance_transform_edt(~targets, sampling=sp)
    zs = np.flatnonzero(targets.any((0, 1)))
    band = np.zeros_like(targets)
    band[:, :, zs.min() : zs.max() + 1] = True
    region = (dist >= 10.0) & (dist < 60.0) & band & (d["body"].numpy()[0] > 0)
    shell = (dist[region] // 5.0).astype(int)

    def standardised(v: np.ndarray) -> np.ndarray:
        out = np.zeros_like(v, dtype=np.float64)
        for s in np.unique(shell):
            sel = shell == s
            out[sel] = (v[sel] - v[sel].mean()) / max(float(v[sel].std()), 1e-9)
        return out

    dose = standardised(d["dose"].numpy()[0][region])
    out = {}
    for name, arr in arrangements.items():
        prior = BeamDosePrior(present, [LEVELS[c] for c in present], beams=arr)
        p = standardised(np.asarray(prior(d["image"], d["masks"], d["body"]))[0][region])
        out[name] = float(np.mean(p * dose))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path, help="folder of converted OpenKBP case folders (vmat-monai convert)")
    ap.add_argument("--max-cases", type=int, default=0, help="first N cases only (0: all)")
    ap.add_argument("--json", type=Path, help="write the per-case scores here")
    args = ap.parse_args()
    cases = sorted(p for p in args.data.iterdir() if (p / "dose.nii.gz").is_file())
    cases = cases[: args.max_cases] if args.max_cases else cases
    arrangements = candidates()
    rows = {p.name: scores(p, arrangements) for p in tqdm(cases, desc="cases", unit="case")}
    best = Counter(max(r, key=r.get) for r in rows.values())
    print(f"{len(rows)} cases; correlation of prior and dose outside the targets (mean ± sd), times best:")
    for name in arrangements:
        v = np.array([r[name] for r in rows.values()])
        print(f"  {name:22s} {v.mean():.3f} ± {v.std():.3f}   best in {best.get(name, 0)}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
