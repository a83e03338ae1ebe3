"""scripts/ensemble_predictions.py: voxel-wise mean and sd of prediction folders, known answers."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tests.scripts import load_script


def _write(folder: Path, cid: str, value: float, shape=(4, 5, 6)) -> None:
    (folder / cid).mkdir(parents=True)
    nib.save(nib.Nifti1Image(np.full(shape, value, np.float32), np.eye(4)), str(folder / cid / "dose_pred.nii.gz"))


def test_mean_and_sd_of_the_cases_every_member_predicted(tmp_path):
    mod = load_script("ensemble_predictions")
    folders = [tmp_path / n for n in ("a", "b", "c")]
    for f, v in zip(folders, (10.0, 12.0, 17.0), strict=True):
        _write(f, "pt_1", v)
    _write(folders[0], "pt_2", 5.0)  # only one member has it: left out
    assert mod.ensemble(folders, tmp_path / "out") == ["pt_1"]
    mean = nib.load(str(tmp_path / "out" / "pt_1" / "dose_pred.nii.gz")).get_fdata()
    sd = nib.load(str(tmp_path / "out" / "pt_1" / "dose_std.nii.gz")).get_fdata()
    assert np.allclose(mean, 13.0) and np.allclose(sd, np.std([10, 12, 17], ddof=1))
    assert len(json.loads((tmp_path / "out" / "pt_1" / "prediction.json").read_text())["members"]) == 3
    _write(tmp_path / "d", "pt_1", 1.0, shape=(4, 5, 7))
    with pytest.raises(ValueError, match="different grids"):
        mod.ensemble([folders[0], tmp_path / "d"], tmp_path / "bad")
