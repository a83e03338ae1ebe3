"""The synthetic dose model: MU over the arc from the anatomy, and a dose that its inputs determine."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from vmat_monai.data.synthetic.cohort import SIDECAR, CohortSettings, _draw_case, plan_inputs
from vmat_monai.data.synthetic.cohort_runner import generate_cohort
from vmat_monai.data.synthetic.dose_model import DOSE_MODEL_VERSION, ArcModel, angle_modulation, compute_plan_dose
from vmat_monai.geometry import Grid
from vmat_monai.metrics.gamma import GammaOptions, gamma, pass_rate


def _ellipse(a_mm: float, b_mm: float) -> tuple[np.ndarray, np.ndarray, Grid]:
    """Water ellipse, semi-axes ``a_mm`` (x) and ``b_mm`` (y), 3 slices at 2 mm; a 'PTV' voxel block at its centre."""
    grid = Grid((-200.0, -200.0, -2.0), (2.0, 2.0, 2.0), (3, 201, 201))
    y, x = np.meshgrid(grid.ys, grid.xs, indexing="ij")
    body = (x / a_mm) ** 2 + (y / b_mm) ** 2 <= 1
    density = np.repeat(body[None].astype(np.float32), 3, axis=0)
    ptv = np.zeros(grid.shape, bool)
    ptv[:, 98:103, 98:103] = True
    return density, ptv, grid


def test_angle_modulation_follows_the_radiological_depth():
    density, ptv, grid = _ellipse(180.0, 110.0)  # wider than deep, like a pelvis
    model = ArcModel(n_angles=36)
    mod = angle_modulation(density, grid, np.array([0.0, 0.0]), ptv, model)
    assert mod.shape == (36,) and np.all((mod >= 0.75) & (mod <= 1.33))
    # lateral beams (90, 270 degrees) cross 180 mm of water, AP beams (0, 180) 110 mm
    lateral, ap = mod[[9, 27]], mod[[0, 18]]
    np.testing.assert_allclose(lateral / ap.mean(), (180.0 / 110.0) ** 0.5, rtol=0.03)
    np.testing.assert_allclose(mod[9], mod[27], rtol=1e-3)
    np.testing.assert_allclose(mod[0], mod[18], rtol=1e-3)
    # a round phantom or no compensation: the same MU at every angle
    round_density, _, _ = _ellipse(140.0, 140.0)
    np.testing.assert_allclose(angle_modulation(round_density, grid, np.zeros(2), ptv, model), 1.0, atol=0.02)
    np.testing.assert_allclose(angle_modulation(density, grid, np.zeros(2), ptv, replace(model, mu_compensation=0)), 1)


def test_plan_dose_is_determined_by_its_inputs():
    """Two random streams (the optimiser's voxel sample) give the same plan: the data's ceiling is ~100 % gamma."""
    settings = CohortSettings.tiny()
    density, masks, grid, goals = plan_inputs(2, 5, settings)
    model = ArcModel(n_angles=settings.n_angles)
    a, b = (compute_plan_dose(density, masks, grid, goals, np.random.default_rng(r), model).dose_gy for r in (1, 2))
    body = masks["BODY"]
    assert np.abs(a - b)[body].mean() < 0.3
    axes = [np.arange(n) * s for n, s in zip(a.shape, grid.spacing[::-1], strict=True)]
    assert pass_rate(gamma(axes, a, axes, b, GammaOptions())) >= 99.0


def test_an_uncontoured_organ_is_not_spared():
    """A structure missing from the structure set is not in the plan's objectives: the network sees
    no such channel, so the plan must not depend on it (seed 3, patient 1 has no Femur_L contour)."""
    settings = CohortSettings.tiny()
    density, masks, grid, goals = plan_inputs(1, 3, settings)
    assert "Femur_L" not in masks and "Femur_R" in masks
    femur_l = _draw_case(1, 3, settings, None).masks_dose_grid["Femur_L"]  # the phantom still has the bone
    model = ArcModel(n_angles=settings.n_angles)
    plan = compute_plan_dose(density, masks, grid, goals, np.random.default_rng(1), model).dose_gy
    spared = compute_plan_dose(
        density, dict(masks, Femur_L=femur_l), grid, goals, np.random.default_rng(1), model
    ).dose_gy
    # sparing it would have lowered its mean dose (about 30 -> 26 Gy); the contoured right head,
    # the only femur objective now, gets about 9 Gy less than the uncontoured left one
    assert plan[femur_l].mean() > spared[femur_l].mean() + 2.0
    assert plan[femur_l].mean() > plan[masks["Femur_R"]].mean() + 5.0


def test_resume_regenerates_cases_of_an_older_dose_model(tmp_path):
    settings = CohortSettings.tiny()
    out = tmp_path / "c"
    generate_cohort(out, 1, seed=3, settings=settings)
    manifest = json.loads((out / "cohort.json").read_text())
    assert manifest["dose_model_version"] == DOSE_MODEL_VERSION
    # a cohort of the previous model: resuming it is refused, naming both versions and the way out
    old = dict(manifest, dose_model_version=1)
    (out / "cohort.json").write_text(json.dumps(old))
    with pytest.raises(FileExistsError, match=r"dose model version 1.*--overwrite"):
        generate_cohort(out, 1, seed=3, settings=settings, resume=True)
    # likewise a cohort whose goals were drawn the old way (no goal_sampling_version: version 1)
    old = {k: v for k, v in manifest.items() if k != "goal_sampling_version"}
    (out / "cohort.json").write_text(json.dumps(old))
    with pytest.raises(FileExistsError, match=r"goal sampling version 1, this is version 2.*--overwrite"):
        generate_cohort(out, 1, seed=3, settings=settings, resume=True)
    # a case folder of the old model without a manifest (an interrupted run) is generated again
    (out / "cohort.json").unlink()
    side = out / "SYN0001" / SIDECAR
    s = json.loads(side.read_text())
    side.write_text(json.dumps(dict(s, dose_model_version=1)))
    generate_cohort(out, 1, seed=3, settings=settings, resume=True)
    assert json.loads(side.read_text())["dose_model_version"] == DOSE_MODEL_VERSION
