"""scripts/calibration_curve.py: the reliability curve of prediction folders against the plans."""

from __future__ import annotations

import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tests.scripts import load_script


def _save(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(arr.astype(np.float32), np.eye(4)), str(path))


def test_curve_of_known_errors_table_and_figure(tmp_path, monkeypatch, capsys):
    """Two cases, body half of the grid: errors of 0.5 and 1.5 Gy with sigma 1 Gy in equal parts
    give 50 % within 1 sd and 100 % within 2 sd; voxels outside the body do not count."""
    mod = load_script("calibration_curve")
    data, pred = tmp_path / "data", tmp_path / "pred"
    for case in ("case_a", "case_b"):
        plan = np.full((4, 4, 4), 60.0)
        body = np.zeros((4, 4, 4))
        body[:2] = 1
        err = np.full((4, 4, 4), 9.0)  # outside the body: far off, ignored
        err[0], err[1] = 0.5, -1.5
        _save(data / case / "dose.nii.gz", plan)
        _save(data / case / "body.nii.gz", body)
        _save(pred / case / "dose_pred.nii.gz", plan + err)
        _save(pred / case / "dose_std.nii.gz", np.ones((4, 4, 4)))
    curve, n = mod.folder_curve(pred, data)
    assert n == 2
    assert curve[mod.K == 1.0][0] == pytest.approx(50.0) and curve[mod.K == 2.0][0] == pytest.approx(100.0)
    assert curve[0] == 0.0 and np.all(np.diff(curve) >= 0)
    out = tmp_path / "fig.png"
    monkeypatch.setattr(sys, "argv", ["calibration_curve.py", f"ens={pred}", "--data", str(data), "--out", str(out)])
    assert mod.main() == 0
    text = capsys.readouterr().out
    assert "| ens | 2 | 50.0 | 100.0 |" in text and "| calibrated (normal) | | 68.3 | 95.4 |" in text
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_folder_without_uncertainty_is_named_with_advice(tmp_path):
    mod = load_script("calibration_curve")
    _save(tmp_path / "pred" / "case_a" / "dose_pred.nii.gz", np.ones((2, 2, 2)))
    with pytest.raises(FileNotFoundError, match="--samples N > 1"):
        mod.folder_curve(tmp_path / "pred", tmp_path / "data")
