"""scripts/score_openkbp.py: the challenge's scores of prediction folders, with their breakdown."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

from tests.scripts import load_script
from vmat_monai.structures import OPENKBP_HN


def _save(path: Path, arr: np.ndarray) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(arr.astype(np.float32), np.diag([4.0, 4.0, 2.5, 1.0])), str(path))
    return str(path.relative_to(path.parents[1]))


def test_two_folders_known_errors_and_a_missing_one(tmp_path, monkeypatch, capsys):
    """Plan: 70 Gy in a PTV70 cube, 20 Gy elsewhere in the mask. Predictions: the plan, and the plan
    2 Gy hot in the targets only; a third folder does not exist (skipped, exit code 1)."""
    data = tmp_path / "data"
    shape = (16, 16, 12)
    pdm = np.zeros(shape, bool)
    pdm[1:-1, 1:-1, 1:-1] = True
    masks = np.zeros((*shape, len(OPENKBP_HN.channels)), np.float32)
    masks[5:10, 5:10, 4:8, OPENKBP_HN.index("PTV70")] = 1
    masks[2:4, 2:4, 2:4, OPENKBP_HN.index("SpinalCord")] = 1
    plan = np.where(masks[..., 0] > 0, 70.0, 20.0) * pdm
    items = []
    for cid in ("pt_1", "pt_2"):
        items.append(
            {
                "case_id": cid,
                "dose": _save(data / cid / "dose.nii.gz", plan),
                "body": _save(data / cid / "body.nii.gz", pdm.astype(np.float32)),
                "masks": _save(data / cid / "masks.nii.gz", masks),
            }
        )
        _save(tmp_path / "same" / cid / "dose_pred.nii.gz", plan)
        _save(tmp_path / "hot" / cid / "dose_pred.nii.gz", plan + 2.0 * masks[..., 0])
    (data / "datalist.json").write_text(json.dumps({"test": items}))
    argv = ["score_openkbp.py", f"exact={tmp_path / 'same'}", f"hot={tmp_path / 'hot'}", str(tmp_path / "none")]
    monkeypatch.setattr(sys, "argv", [*argv, "--data", str(data), "--json", str(tmp_path / "s.json")])
    assert load_script("score_openkbp").main() == 1
    out, err = capsys.readouterr()
    assert "none" in err and "skipped" in err
    scores_table, regions_table = out.split("\n\n")[1:3]
    rows = {line.split(" | ")[0].lstrip("| "): line for line in scores_table.splitlines() if line.startswith("| ")}
    assert "| exact | 0.00 (+0.00) | 0.00 (+0.00) | 0.00 (+0.00) |" in regions_table
    assert "| 0.00 | 0.00 |" in rows["exact"]
    record = json.loads((tmp_path / "s.json").read_text())["hot"]
    n_ptv, n_pdm = masks[..., 0].sum(), pdm.sum()
    assert np.isclose(record["dose_score_gy"], 2.0 * n_ptv / n_pdm, atol=1e-3)
    # targets 2 Gy hot: the target kinds carry the whole DVH score; the organ is untouched
    parts = record["dvh_score_parts"]
    assert parts["target D95"]["bias"] == 2.0 and parts["organ mean"]["mae"] == 0.0
    assert record["dose_error_by_region"]["ME_targets"] == 2.0 and record["dose_error_by_region"]["MAE_far"] == 0.0
    assert f"| hot | {record['dose_score_gy']:.2f} |" in rows["hot"]
