"""Clinical goals on doses with known DVHs."""

from __future__ import annotations

import numpy as np
import pytest

from vmat_monai.constraints import ConstraintVector
from vmat_monai.metrics.goals import evaluate_goals, goal_agreement
from vmat_monai.structures import PROSTATE_SIB


def _case(ptv_dose: float, rectum_hot_fraction: float):
    shape = (10, 10, 10)
    dose = np.zeros(shape)
    masks = {name: np.zeros(shape, dtype=bool) for name in PROSTATE_SIB.channels}
    masks["PTV70"][:2] = True
    masks["PTV56"][:4] = True
    masks["Rectum"][5:7] = True
    dose[:4] = 56.0
    dose[:2] = ptv_dose
    n_hot = round(rectum_hot_fraction * 10)
    dose[5:7, :n_hot] = 71.0  # rectum V70 = fraction of rows that are hot
    return dose, masks


def test_goals_pass_and_fail_as_the_dose_says():
    natural = ConstraintVector.defaults().as_goals()
    dose, masks = _case(70.0, 0.1)
    res = {g.goal: g for g in evaluate_goals(dose, masks, PROSTATE_SIB, natural, 0.001)}
    assert res["PTV70 D95 >= 66.5 Gy"].passed and res["PTV70 D95 >= 66.5 Gy"].value == 70.0
    assert res["PTV70 D2 <= 74.9 Gy"].passed
    assert res["Rectum V70Gy <= 20.0 %"].passed and res["Rectum V70Gy <= 20.0 %"].value == pytest.approx(10.0)
    assert not any(g.structure == "Bladder" for g in res.values())  # no bladder contour: skipped
    hot, masks = _case(76.0, 0.3)
    res_hot = {g.goal: g for g in evaluate_goals(hot, masks, PROSTATE_SIB, natural, 0.001)}
    assert not res_hot["PTV70 D2 <= 74.9 Gy"].passed
    assert not res_hot["Rectum V70Gy <= 20.0 %"].passed and res_hot["Rectum V70Gy <= 20.0 %"].value == pytest.approx(
        30.0
    )
    assert res_hot["Rectum D0.03cc <= 75.0 Gy"].passed  # 71 Gy
    agree = goal_agreement(list(res_hot.values()), list(res.values()))
    assert 0 < agree < 1
