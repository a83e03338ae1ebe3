"""Fast gamma against pymedphys (the reference) on varied small pairs, and known answers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from vmat_monai.metrics.gamma import GammaOptions, gamma, gamma_pymedphys, pass_rate, shell_points

SHAPE = (14, 22, 20)
AXES = [np.arange(n) * s + o for n, s, o in zip(SHAPE, (2.5, 2.0, 2.2), (-10.0, 5.0, 3.0), strict=True)]


def _pair(seed: int, shift: tuple[float, float, float], scale: float, noise: float):
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*AXES, indexing="ij")
    ref = 60 * np.exp(-(((z - 8) / 14) ** 2 + ((y - 26) / 15) ** 2 + ((x - 24) / 13) ** 2)) + 5
    ev = ndimage.shift(ref, shift, order=1, mode="nearest") * scale
    ev = ev + ndimage.gaussian_filter(rng.normal(0, noise, SHAPE), 1)
    return ref, np.clip(ev, 0, None)


@pytest.mark.parametrize(
    ("seed", "shift", "scale", "noise", "opts"),
    [
        (0, (0.4, 0.8, -0.5), 1.02, 3.0, GammaOptions()),
        (1, (1.0, 0.0, 0.3), 0.97, 5.0, GammaOptions(local_gamma=True)),
        (2, (0.0, 1.2, 1.2), 1.04, 2.0, GammaOptions(dose_percent=2, distance_mm=2, lower_percent_dose_cutoff=20)),
        (3, (0.5, -0.5, 0.5), 1.0, 6.0, GammaOptions(interp_fraction=5, max_gamma=3.0, global_normalisation=50.0)),
    ],
)
def test_fast_gamma_equals_pymedphys(seed, shift, scale, noise, opts):
    ref, ev = _pair(seed, shift, scale, noise)
    fast = gamma(AXES, ref, AXES, ev, opts)
    slow = gamma_pymedphys(AXES, ref, AXES, ev, opts)
    assert np.array_equal(np.isnan(fast), np.isnan(slow))
    ok = ~np.isnan(slow)
    assert np.abs(fast[ok] - slow[ok]).max() <= 0.02
    assert abs(pass_rate(fast) - pass_rate(slow)) <= 0.1
    assert 30 < pass_rate(slow) < 100  # the pairs exercise both passing and failing voxels


def test_known_answers():
    ref, _ = _pair(0, (0, 0, 0), 1.0, 0.0)
    g = gamma(AXES, ref, AXES, ref)
    assert pass_rate(g) == 100.0 and np.nanmax(g) < 1e-9
    # a uniform 6 % dose error on a flat field is gamma 2 under 3 %/3 mm (no distance can help)
    flat = np.full(SHAPE, 50.0)
    g = gamma(AXES, flat, AXES, flat * 1.06, GammaOptions(max_gamma=3.0))
    np.testing.assert_allclose(g, 2.0, atol=1e-9)
    # below the low-dose cutoff nothing is computed
    low = ref.copy()
    low[0] = 0.0
    assert np.isnan(gamma(AXES, low, AXES, low)[0]).all()


def test_random_subset_is_seeded_and_the_shell_has_no_gap_larger_than_the_step():
    ref, ev = _pair(1, (1.0, 0.0, 0.3), 0.97, 5.0)
    a = gamma(AXES, ref, AXES, ev, GammaOptions(random_subset=200, seed=4))
    b = gamma(AXES, ref, AXES, ev, GammaOptions(random_subset=200, seed=4))
    assert np.array_equal(np.isnan(a), np.isnan(b)) and np.sum(~np.isnan(a)) == 200
    pts = shell_points(3.0, 0.3)
    assert np.allclose(np.linalg.norm(pts, axis=1), 3.0)
    with pytest.raises(ValueError, match="positive"):
        GammaOptions(dose_percent=0)


def test_evaluation_on_another_grid_equals_pymedphys():
    ref, _ = _pair(5, (0, 0, 0), 1.0, 0.0)
    axes_ev = [np.arange(n) * s + o for n, s, o in zip((12, 20, 18), (2.7, 2.1, 2.4), (-9.0, 6.1, 4.0), strict=True)]
    z, y, x = np.meshgrid(*axes_ev, indexing="ij")
    ev = 61 * np.exp(-(((z - 8.5) / 14) ** 2 + ((y - 26) / 15) ** 2 + ((x - 24.5) / 13) ** 2)) + 5
    opts = GammaOptions(max_gamma=3.0)
    fast = gamma(AXES, ref, axes_ev, ev, opts)
    slow = gamma_pymedphys(AXES, ref, axes_ev, ev, opts)
    assert np.array_equal(np.isnan(fast), np.isnan(slow))  # outside the evaluated grid: no point found
    ok = ~np.isnan(slow)
    assert np.abs(fast[ok] - slow[ok]).max() <= 0.02 and abs(pass_rate(fast) - pass_rate(slow)) <= 0.1
