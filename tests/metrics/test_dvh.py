"""DVH statistics against analytic answers (uniform dose, linear ramp, partial volumes)."""

from __future__ import annotations

import numpy as np
import pytest

from vmat_monai.metrics.dvh import (
    cumulative_dvh,
    dose_at_volume_cc,
    dose_at_volume_percent,
    dvh_statistics,
    volume_at_dose,
)


def test_uniform_dose_gives_that_dose_for_every_statistic():
    dose = np.full((4, 5, 6), 61.3)
    mask = np.ones_like(dose, dtype=bool)
    st = dvh_statistics(dose, mask, 0.008, ("D98", "D95", "D50", "D2", "Dmean", "D0.03cc", "D0.1cc", "Dmax_voxel"))
    assert all(v == pytest.approx(61.3) for v in st.values())
    assert volume_at_dose(dose, mask, 61.3, 0.008) == pytest.approx((100.0, 120 * 0.008))
    assert volume_at_dose(dose, mask, 61.4, 0.008) == (0.0, 0.0)


def test_linear_ramp_matches_the_continuous_answer():
    # 1000 voxels of 0.01 cc with doses 0.05, 0.15, ..., 99.95 Gy: a uniform distribution on [0, 100] Gy
    n = 1000
    dose = (np.arange(n) + 0.5) * 100.0 / n
    mask = np.ones(n, dtype=bool)
    for x in (2, 5, 50, 95, 98):
        assert dose_at_volume_percent(dose, mask, x, 0.01) == pytest.approx(100.0 - x, abs=1e-9)
    # hottest 0.1 cc of a 10 cc structure is 1 % of it
    assert dose_at_volume_cc(dose, mask, 0.1, 0.01) == pytest.approx(99.0, abs=1e-9)
    assert dvh_statistics(dose, mask, 0.01, ("Dmean",))["Dmean"] == pytest.approx(50.0)
    pct, cc = volume_at_dose(dose, mask, 70.0, 0.01)
    assert pct == pytest.approx(30.0) and cc == pytest.approx(3.0)


def test_partial_volume_weights_count_fractional_voxels():
    dose = np.array([10.0, 20.0, 30.0, 40.0])
    half = np.array([1.0, 1.0, 0.5, 0.0])  # 2.5 voxels
    st = dvh_statistics(dose, half, 1.0, ("Dmean", "V20", "V20cc"))
    assert st["Dmean"] == pytest.approx((10 + 20 + 15) / 2.5)
    assert st["V20"] == pytest.approx(100 * 1.5 / 2.5)
    assert st["V20cc"] == pytest.approx(1.5)


def test_cumulative_dvh_curve_is_monotone_and_starts_at_the_full_volume():
    rng = np.random.default_rng(0)
    dose = rng.uniform(0, 70, (10, 10, 10))
    mask = dose > -1
    h = cumulative_dvh(dose, mask, 0.027, bin_gy=0.5)
    assert h.volume_cc[0] == pytest.approx(1000 * 0.027)
    assert np.all(np.diff(h.volume_cc) <= 1e-12)
    # the curve at d equals V_d
    k = int(np.searchsorted(h.dose_gy, 35.0))
    assert h.volume_cc[k] == pytest.approx(volume_at_dose(dose, mask, h.dose_gy[k], 0.027)[1])
    assert h.volume_percent[0] == pytest.approx(100.0)


def test_empty_structure_gives_nan_and_bad_input_raises():
    dose = np.ones((3, 3))
    assert np.isnan(dvh_statistics(dose, np.zeros((3, 3)), 1.0, ("D95",))["D95"])
    with pytest.raises(ValueError, match="differ"):
        dvh_statistics(dose, np.ones((2, 2)), 1.0)
    with pytest.raises(ValueError, match="NaN"):
        dvh_statistics(np.full((3, 3), np.nan), np.ones((3, 3)), 1.0)
    with pytest.raises(ValueError, match="unknown DVH statistic"):
        dvh_statistics(dose, np.ones((3, 3)), 1.0, ("X12",))
