"""How the synthetic cohort draws its plans' goals: uniform in the planner's tightness."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from vmat_monai.constraints import ConstraintVector
from vmat_monai.data.synthetic.goals import (
    ORGAN_GOALS,
    goal_tightness,
    goals_at,
    sample_goals,
    strictness_of,
    tightness_positions,
)


def test_the_protocol_defaults_have_tightness_one():
    goals = ConstraintVector.defaults().as_goals()
    assert goal_tightness(goals) == pytest.approx(dict.fromkeys(ORGAN_GOALS, 1.0))


def test_positions_zero_and_one_are_the_loosest_and_tightest_goal_sets():
    loose = sample_goals(np.random.default_rng(0), dict.fromkeys(ORGAN_GOALS, 0.0))
    tight = sample_goals(np.random.default_rng(0), dict.fromkeys(ORGAN_GOALS, 1.0))
    assert loose == {
        "rectum_V50": 0.60, "rectum_V60": 0.42, "rectum_V70": 0.25, "rectum_Dmax": 76.0,
        "bladder_V65": 0.55, "bladder_V70": 0.40, "bladder_V75": 0.30, "femur_V50": 0.15, "bowel_V45cc": 250.0,
    }  # fmt: skip
    assert tight == {
        "rectum_V50": 0.35, "rectum_V60": 0.22, "rectum_V70": 0.12, "rectum_Dmax": 73.0,
        "bladder_V65": 0.35, "bladder_V70": 0.25, "bladder_V75": 0.18, "femur_V50": 0.05, "bowel_V45cc": 120.0,
    }  # fmt: skip


@pytest.mark.parametrize("organ", list(ORGAN_GOALS))
def test_a_position_maps_to_the_goals_whose_tightness_lies_there(organ):
    for p in np.linspace(0, 1, 11):
        goals = goals_at({o: strictness_of(o, p) for o in ORGAN_GOALS})
        assert tightness_positions(goals)[organ] == pytest.approx(p, abs=1e-4)


def test_a_cohort_covers_the_tightness_range_evenly():
    rng = np.random.default_rng(7)
    drawn = [sample_goals(rng) for _ in range(3000)]
    for organ in ORGAN_GOALS:
        positions = [tightness_positions(g)[organ] for g in drawn]
        # goals are rounded to 0.001 (fractions): positions within that of uniform
        assert stats.kstest(positions, "uniform").statistic < 0.03, organ
    # femoral heads: t = 0.10 / V50 runs 0.67-2, so three plans in four have V50 <= 0.10
    # (half of them under uniform goals, which left the steep, tight end thinly covered)
    femur = np.array([g["femur_V50"] for g in drawn])
    assert 0.72 < (femur <= 0.10).mean() < 0.78
    assert femur.min() >= 0.05 and femur.max() <= 0.15


def test_goals_use_four_draws_so_the_cohort_anatomies_are_unchanged():
    a, b = np.random.default_rng(11), np.random.default_rng(11)
    sample_goals(a)
    b.uniform(size=4)
    assert a.uniform() == b.uniform()
