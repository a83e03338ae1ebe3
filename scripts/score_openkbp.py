"""Score OpenKBP prediction folders as the challenge does, and show where the scores come from.

Each ``label=folder`` (or a plain folder; see ``vmat_monai.cli.common.labelled_path``) holds
``<case_id>/dose_pred.nii.gz`` per patient: the OpenKBP job's ``predictions-<name>``, an ensemble,
another tool's NIfTI on the case grid. ``--data`` is the job's data folder; its ``datalist.json``
split (``test``: the challenge's validation patients) is scored with the job's ``openkbp_scores``:

- the dose and DVH scores (Gy);
- the DVH score by kind of metric: targets' D99 / D95 / D1 and organs' D0.1cc / mean, each as
  mean |error| and bias (positive: the prediction is hot);
- the dose error inside the targets, in their 20 mm fall-off and beyond: MAE (mean error).

    python scripts/score_openkbp.py default=runs/okbp/predictions-f9defm20s0 \\
        "MAE + DVH=runs/okbp/predictions-f9maedvhm20s0" --data runs/okbp/data
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vmat_monai.cli.common import per_labelled_folder
from vmat_monai.metrics.dose_error import TARGET_REGIONS
from vmat_monai.metrics.openkbp import DVH_KINDS


def markdown_tables(scored: dict) -> str:
    """The scores with the DVH kinds, and the dose error by region, as two Markdown tables."""
    kinds = list(DVH_KINDS.values())
    head = "| predictions | dose score (Gy) | DVH score (Gy) | " + " | ".join(f"{k}: \\|e\\| (bias)" for k in kinds)
    lines = [head + " |", "|---" * (3 + len(kinds)) + "|"]
    for label, s in scored.items():
        parts = [
            f"{s.dvh_parts[k]['mae']:.2f} ({s.dvh_parts[k]['bias']:+.2f})" if k in s.dvh_parts else "–" for k in kinds
        ]
        lines.append(f"| {label} | {s.dose_score:.2f} | {s.dvh_score:.2f} | " + " | ".join(parts) + " |")
    lines += ["", "| predictions | " + " | ".join(f"{r}: MAE (ME), Gy" for r in TARGET_REGIONS) + " | voxel shares |"]
    lines.append("|---" * (2 + len(TARGET_REGIONS)) + "|")
    for label, s in scored.items():
        g = s.regions
        cells = [f"{g[f'MAE_{r}']:.2f} ({g[f'ME_{r}']:+.2f})" for r in TARGET_REGIONS]
        shares = " / ".join(f"{g[f'share_{r}']:.2f}" for r in TARGET_REGIONS)
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {shares} |")
    return "\n".join(lines)


def main() -> int:
    from vmat_monai.data.datasets import load_datalist
    from vmat_monai.workflows.openkbp import openkbp_scores

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", nargs="+", help="label=prediction folder (<case_id>/dose_pred.nii.gz)")
    ap.add_argument("--data", type=Path, required=True, help="the OpenKBP job's data folder (datalist.json)")
    ap.add_argument("--split", default="test", help="datalist split to score (default: test)")
    ap.add_argument("--json", type=Path, default=None, help="also write every figure to this JSON file")
    args = ap.parse_args()
    datalist = args.data / "datalist.json"
    if not datalist.is_file():
        print(
            f"--data {args.data}: no datalist.json; pass the OpenKBP job's data folder (<workdir>/data)",
            file=sys.stderr,
        )
        return 2
    items = load_datalist(datalist, args.split)
    scored, failed = per_labelled_folder(args.folders, lambda folder: openkbp_scores(folder, items))
    if not scored:
        return 1
    print(f"{len(items)} patients ({args.split} split of {datalist})\n")
    print(markdown_tables(scored))
    if args.json is not None:
        from vmat_monai.atomic import write_text_atomic

        record = {
            k: {"dose_score_gy": s.dose_score, "dvh_score_gy": s.dvh_score, **s.record()} for k, s in scored.items()
        }
        write_text_atomic(args.json, json.dumps(record, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
