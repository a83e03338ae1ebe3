"""MAE / mean error and the OpenKBP scores on hand-made cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from vmat_monai.metrics.dose_error import mean_absolute_error, mean_error, structure_errors
from vmat_monai.metrics.openkbp import dose_score, dvh_metrics, dvh_score


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
