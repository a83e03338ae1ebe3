"""`vmat-monai evaluate` on converted tiny cases with predictions of known error."""

from __future__ import annotations

import csv
import json

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from vmat_monai.cli import main
from vmat_monai.evaluation.case_metrics import evaluate_case, load_case
from vmat_monai.metrics.gamma import GammaOptions


@pytest.fixture(scope="module")
def predictions(converted, tmp_path_factory):
    """Case A predicted exactly, case B 5 % too hot, plus a stray and a broken prediction."""
    out, _ = converted
    pred = tmp_path_factory.mktemp("pred")
    cases = sorted(p.parent for p in out.glob("*/case.json"))
    for case_dir, factor in zip(cases, (1.0, 1.05), strict=True):
        img = nib.load(str(case_dir / "dose.nii.gz"))
        (pred / case_dir.name).mkdir()
        dose = np.asarray(img.dataobj) * factor
        nib.save(nib.Nifti1Image(dose.astype(np.float32), img.affine), str(pred / case_dir.name / "dose_pred.nii.gz"))
    (pred / "case_stray").mkdir()
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4)), str(pred / "case_stray" / "dose_pred.nii.gz"))
    return pred, cases


def test_known_errors_are_measured(predictions):
    pred, (exact, hot) = predictions
    ev = evaluate_case(load_case(exact, pred / exact.name / "dose_pred.nii.gz"))
    r = ev.row
    assert r["MAE_body"] == 0 and r["dose_score"] == 0 and r["dvh_score"] == 0
    assert r["gamma_pass_rate"] == 100.0 and r["PTV70_D95_err"] == 0
    assert r["goals_agreement"] == 100.0
    case = load_case(hot, pred / hot.name / "dose_pred.nii.gz")
    ev = evaluate_case(case, GammaOptions(max_gamma=3.0))
    r = ev.row
    body_mean = case.plan[case.body].mean()
    assert r["ME_body"] == pytest.approx(0.05 * body_mean, rel=1e-4)
    assert r["PTV70_D95_err"] == pytest.approx(0.05 * r["PTV70_D95_plan"], rel=1e-4)
    assert r["PTV70_MAE"] == pytest.approx(0.05 * case.plan[case.masks["PTV70"]].mean(), rel=1e-4)
    # the regions by distance to the targets split the body: their voxel-weighted errors add up to the body's
    shares = [r[f"share_{k}"] for k in ("targets", "falloff", "far")]
    assert sum(shares) == pytest.approx(1.0) and min(shares) > 0
    parts = sum(r[f"share_{k}"] * r[f"ME_{k}"] for k in ("targets", "falloff", "far"))
    assert parts == pytest.approx(r["ME_body"], rel=1e-6)
    assert r["ME_targets"] > r["ME_falloff"] > r["ME_far"] > 0  # 5 % of a dose that falls away from the targets
    # 5 % too hot: every voxel below 60 % of the maximum is within 3 % of the maximum (passes at
    # distance 0); the PTV plateau (> 90 % of the maximum) has no voxel nearby that is 2 % colder
    g, dmax = ev.gamma_map, case.plan.max()
    low = (case.plan < 0.599 * dmax) & ~np.isnan(g)
    assert low.any() and np.all(g[low] <= 1.0)
    plateau = case.masks["PTV70"] & (case.plan > 0.98 * dmax)
    assert np.mean(g[plateau] > 1.0) > 0.9
    assert 0 < r["gamma_pass_rate"] < 100
    # hot spot D2 <= 107 %: plan passes (synthetic plans stay <= 107 %), 5 % hotter fails
    assert r["goals_pass_rate_pred"] < r["goals_pass_rate_plan"]


def test_cli_writes_csv_json_figures_and_reports_the_stray(predictions, tmp_path, capsys):
    pred, (exact, hot) = predictions
    data = exact.parent
    rc = main(["evaluate", "--pred", str(pred), "--ref", str(data), "--out", str(tmp_path), "--figures", "summary"])
    assert rc == 0  # a prediction without a case is reported, not fatal
    out = capsys.readouterr()
    assert "case_stray" in out.err and "mean ± sd" in out.out
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert {r["case_id"] for r in rows} == {exact.name, hot.name}
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["metrics"]["MAE_body"]["n"] == 2 and "case_stray" in summary["missing"]
    assert summary["per_structure"]["PTV70"]["D95_abs_err"]["n"] == 2
    goals = list(csv.DictReader((tmp_path / "goals.csv").open()))
    assert any(g["goal"].startswith("PTV70 D2") for g in goals)
    png = tmp_path / "figures" / hot.name / "summary.png"
    assert (tmp_path / "figures" / hot.name / "summary.pdf").stat().st_size > 10_000
    with Image.open(png) as im:
        assert round(im.info["dpi"][0]) == 300


def test_a_broken_prediction_fails_its_case_only(predictions, tmp_path, capsys):
    pred, (exact, hot) = predictions
    bad = tmp_path / "pred"
    (bad / exact.name).mkdir(parents=True)
    (bad / hot.name).mkdir()
    (bad / exact.name / "dose_pred.nii.gz").write_bytes(b"not a nifti")
    img = nib.load(str(pred / hot.name / "dose_pred.nii.gz"))
    nib.save(img, str(bad / hot.name / "dose_pred.nii.gz"))
    rc = main(["evaluate", "--pred", str(bad), "--ref", str(exact.parent), "--figures", "none", "--no-gamma"])
    assert rc == 1
    err = capsys.readouterr().err
    assert exact.name in err and "cannot read prediction" in err
    summary = json.loads((bad / "evaluation" / "summary.json").read_text())
    assert summary["cases"] == [hot.name]
    assert main(["evaluate", "--pred", str(bad), "--ref", str(tmp_path / "nowhere")]) == 2
