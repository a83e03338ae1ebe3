"""MAE / mean error and the OpenKBP scores on hand-made cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from vmat_monai.metrics.dose_error import (
    errors_by_target_distance,
    mean_absolute_error,
    mean_error,
    structure_errors,
    target_distance_regions,
)
from vmat_monai.metrics.openkbp import dose_score, dvh_metric_kind, dvh_metrics, dvh_score, dvh_score_parts


def test_mae_and_mean_error_inside_a_mask():
    ref = np.zeros((2, 2, 2))
    pred = ref.copy()
    pred[0] = 2.0
    pred[1, 0, 0] = -4.0
    mask = np.zeros_like(ref, dtype=bool)
    mask[0, 0] = mask[1, 0] = True  # voxels: 2, 2, -4, 0
    assert mean_absolute_error(pred, ref, mask) == pytest.approx(2.0)
    assert mean_error(pred, ref, mask) == pytest.approx(0.0)
    assert mean_absolute_error(pred, ref) == pytest.approx(12 / 8)
    errs = structure_errors(pred, ref, {"A": mask})
    assert errs == {"A_MAE": pytest.approx(2.0), "A_ME": pytest.approx(0.0)}
    assert np.isnan(mean_absolute_error(pred, ref, np.zeros_like(mask)))
    with pytest.raises(ValueError, match="different grids"):
        mean_absolute_error(pred, ref[0])


def test_regions_by_distance_to_the_targets_use_millimetres():
    # a row of voxels 5 mm apart along axis 0 and 2 mm apart along axis 1; target: voxel (2, 2)
    targets = np.zeros((12, 12, 1), dtype=bool)
    targets[2, 2] = True
    body = np.ones_like(targets)
    body[11] = False
    r = target_distance_regions(targets, body, (5.0, 2.0, 3.0), margin_mm=10.0)
    assert r["targets"].sum() == 1
    # within 10 mm: axis 0 offsets -2..2 (10 mm) and axis 1 offsets -5..5 (10 mm), inside the ellipse
    near = {(i, j) for i in range(12) for j in range(12) if ((i - 2) * 5.0) ** 2 + ((j - 2) * 2.0) ** 2 <= 100.0}
    assert {tuple(v[:2]) for v in np.argwhere(r["falloff"])} == near - {(2, 2)}
    assert not (r["far"] & (r["falloff"] | r["targets"])).any()
    assert (r["far"] | r["falloff"] | r["targets"]).sum() == body.sum()  # every body voxel, once
    # no target: everything in the body is far
    empty = target_distance_regions(np.zeros_like(targets), body, (5.0, 2.0, 3.0))
    assert empty["far"].sum() == body.sum() and not empty["falloff"].any()


def test_errors_by_target_distance_on_a_hand_made_case():
    targets = np.zeros((20, 1, 1), dtype=bool)
    targets[:4] = True
    ref = np.zeros((20, 1, 1))
    pred = ref.copy()
    pred[:4], pred[4:8], pred[8:] = -1.0, 3.0, 0.5  # targets cold, fall-off (4 voxels of 5 mm) hot
    e = errors_by_target_distance(pred, ref, targets, np.ones_like(targets), (5.0, 5.0, 5.0), margin_mm=20.0)
    assert (e["MAE_targets"], e["ME_targets"]) == (pytest.approx(1.0), pytest.approx(-1.0))
    assert (e["MAE_falloff"], e["ME_falloff"]) == (pytest.approx(3.0), pytest.approx(3.0))
    assert (e["MAE_far"], e["share_far"]) == (pytest.approx(0.5), pytest.approx(12 / 20))
    with pytest.raises(ValueError, match="do not match"):
        target_distance_regions(targets, np.ones((20, 1)), (5.0, 5.0, 5.0))


def test_openkbp_scores_are_zero_for_a_perfect_prediction():
    rng = np.random.default_rng(0)
    ref = rng.uniform(0, 70, (8, 8, 8))
    possible = ref > 5
    masks = {"PTV70": ref > 60, "Brainstem": ref < 20}
    m = dvh_metrics(ref, masks, (4.0, 4.0, 2.5), targets=("PTV70",))
    assert dose_score(ref, ref, possible) == 0.0
    assert dvh_score([m], [m]) == 0.0


def test_openkbp_scores_on_a_hand_made_case():
    # 10 voxels of 4 x 4 x 2.5 mm = 40 mm3: 0.1 cc is round(100 / 40) = 2 voxels (not 2.5)
    ref = np.arange(10, dtype=float)  # 0..9 Gy
    pred = ref + 1.0
    possible = np.ones(10, dtype=bool)
    possible[0] = False
    assert dose_score(pred, ref, possible) == pytest.approx(1.0)
    organ = {"Cord": np.ones(10, dtype=bool)}
    m = dvh_metrics(ref, organ, (4.0, 4.0, 2.5), targets=())
    # D_0.1cc = 80th percentile (100 - 2/10*100) of 0..9 with linear interpolation = 7.2
    assert m == {"Cord_D_0.1_cc": pytest.approx(7.2), "Cord_mean": pytest.approx(4.5)}
    t = dvh_metrics(ref, {"PTV": np.ones(10, dtype=bool)}, (4.0, 4.0, 2.5), targets=("PTV",))
    assert t == {"PTV_D_99": pytest.approx(0.09), "PTV_D_95": pytest.approx(0.45), "PTV_D_1": pytest.approx(8.91)}
    mp = dvh_metrics(pred, organ, (4.0, 4.0, 2.5), targets=())
    assert dvh_score([mp], [m]) == pytest.approx(1.0)
    # empty structures are left out; a metric missing in the prediction does not count
    assert dvh_metrics(ref, {"Empty": np.zeros(10, dtype=bool)}, (4, 4, 2.5), ()) == {}
    assert dvh_score([{"Cord_mean": 5.5}], [m]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="empty"):
        dose_score(pred, ref, np.zeros(10, dtype=bool))


def test_dvh_score_parts_split_the_score_by_kind_of_metric():
    ref = [
        {"PTV70_D_99": 66.0, "PTV70_D_95": 68.0, "PTV70_D_1": 74.0, "Cord_D_0.1_cc": 40.0, "Cord_mean": 20.0},
        {"PTV70_D_99": 65.0, "Cord_mean": 10.0},
    ]
    pred = [
        {"PTV70_D_99": 62.0, "PTV70_D_95": 67.0, "PTV70_D_1": 74.0, "Cord_D_0.1_cc": 43.0, "Cord_mean": 22.0},
        {"PTV70_D_99": 63.0, "Cord_mean": 6.0},
    ]
    parts = dvh_score_parts(pred, ref)
    # errors: D99 -4, -2; D95 -1; D1 0; D0.1cc +3; mean +2, -4 -> 16 Gy over 7 values
    assert parts["target D99"] == {"mae": 3.0, "bias": -3.0, "n": 2, "share": pytest.approx(6 / 16)}
    assert parts["organ mean"] == {"mae": 3.0, "bias": -1.0, "n": 2, "share": pytest.approx(6 / 16)}
    assert parts["target D1"]["mae"] == 0.0 and parts["organ D0.1cc"]["bias"] == 3.0
    assert sum(v["n"] * v["mae"] for v in parts.values()) / 7 == pytest.approx(dvh_score(pred, ref))
    assert sum(v["share"] for v in parts.values()) == pytest.approx(1.0)
    assert dvh_metric_kind("Left_Parotid_D_0.1_cc") == "organ D0.1cc"
    with pytest.raises(ValueError, match="not an OpenKBP DVH metric"):
        dvh_metric_kind("PTV70_V95")
