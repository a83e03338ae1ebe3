"""The main job end to end on a small cohort (slow: `pytest -m slow`, about 10 min on 2 cores)."""

from __future__ import annotations

import csv
import json

import pytest

from vmat_monai.cli import main

pytestmark = pytest.mark.slow


def test_main_job_runs_every_stage_and_resumes(tmp_path, capsys):
    args = ["demo", "--workdir", str(tmp_path), "--cases", "6", "--plans-per-patient", "2", "--train-minutes", "0.5"]
    assert main(args) == 0
    out = capsys.readouterr().out
    for stage in ("[1/7]", "[4/7]", "[5/7]", "[6/7]", "[7/7]", "main job summary", "MAE in the body"):
        assert stage in out
    assert (tmp_path / "model" / "training.json").is_file()
    held_out = list(csv.DictReader((tmp_path / "predictions" / "evaluation" / "metrics.csv").open()))
    assert len(held_out) == 4 and all(float(r["gamma_pass_rate"]) >= 0 for r in held_out)  # 2 patients × 2 plans
    for r in held_out:
        assert (tmp_path / "predictions" / r["case_id"] / "RD.pred.dcm").is_file()
    what_if = json.loads((tmp_path / "what_if" / "what_if.json").read_text())
    assert set(what_if["change"]) >= {"Dmean", "V70"} and (tmp_path / "what_if" / "what_if.png").is_file()
    # a second run reuses the cohort, the conversion, the training and the predictions
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "training: reusing" in out and "predict: reusing 4 predictions" in out
