"""Array transforms: known answers (analytic distances), numpy / torch / MetaTensor inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from vmat_monai.transforms import ChannelUnion, ConstraintToChannels, DoseToRelative, FlipPairs, SignedDistance

SPACINGS = [(1.2, 0.8, 2.5), (1.0, 1.0, 3.0), (2.5, 2.5, 2.5)]


def _grid(spacing, shape=(60, 90, 40)):
    return np.indices(shape).transpose(1, 2, 3, 0) * np.asarray(spacing)


def _sphere(spacing):
    pts = _grid(spacing)
    centre = np.array([30.3, 44.1, 19.6]) * np.array([1.2, 0.8, 2.5])
    return np.linalg.norm(pts - centre, axis=-1) - 18.0


def _box(spacing):
    pts = _grid(spacing)
    lo, hi = np.array([10.2, 20.7, 8.1]), np.array([40.5, 50.3, 30.9])
    q = np.maximum(lo - pts, pts - hi)
    return np.linalg.norm(np.maximum(q, 0), axis=-1) + np.minimum(q.max(-1), 0)


@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("shape_fn", [_sphere, _box])
def test_signed_distance_matches_analytic_distance(spacing, shape_fn):
    truth = shape_fn(spacing)
    margin = 30.0
    affine = np.diag([*spacing, 1.0])
    img = MetaTensor(torch.from_numpy((truth <= 0)[None].astype(np.uint8)), affine=torch.from_numpy(affine))
    sdf = np.asarray(SignedDistance(margin_mm=margin)(img))[0] * margin  # spacing from the affine
    near = np.abs(truth) < margin - 3
    err = np.abs(sdf[near] - truth[near])
    # a binary mask knows the surface only to within a voxel: max error one voxel, mean a quarter
    assert err.max() <= max(spacing)
    assert err.mean() <= 0.25 * max(spacing)
    assert np.all(sdf[truth < -1.5 * max(spacing)] < 0) and np.all(sdf[truth > 1.5 * max(spacing)] > 0)
    assert np.all(np.abs(sdf) <= margin)
    far = truth > margin + 2 * max(spacing)
    assert np.all(sdf[far] == margin)


def test_signed_distance_input_types_and_special_channels():
    m = np.zeros((3, 20, 20, 10), bool)
    m[0, 5:10, 5:10, 3:6] = True
    m[2] = True  # fills the image
    sp = (1.0, 1.0, 2.0)
    a = SignedDistance(margin_mm=10, spacing=sp)(m)
    t = SignedDistance(margin_mm=10, spacing=sp)(torch.from_numpy(m))
    assert isinstance(a, np.ndarray) and isinstance(t, torch.Tensor)
    np.testing.assert_allclose(a, t.numpy())
    assert np.all(a[1] == 1.0)  # absent structure: "far away", never a nearby organ
    assert np.all(a[2] == -1.0)
    assert a.min() >= -1 and a.max() <= 1
    assert np.all(SignedDistance(spacing=sp, empty_value=2.0)(m)[1] == 2.0)
    with pytest.raises(ValueError, match="spacing unknown"):
        SignedDistance()(m)


def test_box_restricted_transform_equals_full_image_transform():
    from scipy import ndimage

    m = np.zeros((1, 40, 50, 30), bool)
    m[0, 10:20, 12:30, 5:9] = True
    sp = np.array([1.5, 1.0, 2.0])
    margin = 12.0
    d_out = ndimage.distance_transform_edt(~m[0], sampling=sp)
    d_in = ndimage.distance_transform_edt(m[0], sampling=sp)
    half = 0.5 * sp.min()
    full = np.clip(np.where(m[0], -(d_in - half), d_out - half), -margin, margin) / margin
    np.testing.assert_allclose(SignedDistance(margin_mm=margin, spacing=sp)(m)[0], full, atol=1e-6)


def test_dose_to_relative_is_exactly_invertible():
    dose = np.random.default_rng(0).uniform(0, 75, size=(1, 8, 8, 8)).astype(np.float32)
    t = DoseToRelative()
    rel = t(dose, 70.0)
    np.testing.assert_allclose(rel, dose / 70.0)
    np.testing.assert_allclose(t.inverse(rel, 70.0), dose, rtol=1e-6)
    with pytest.raises(ValueError, match="positive prescription"):
        t(dose)


def test_constraint_channels_and_channel_union():
    v = np.arange(13, dtype=np.float32) / 10
    ch = ConstraintToChannels()(v, (4, 5, 6))
    assert ch.shape == (13, 4, 5, 6) and ch.dtype == torch.float32
    assert torch.all(ch[7] == v[7])
    m = np.zeros((3, 4, 4, 4), np.uint8)
    m[0, 0, 0, 0] = 1
    m[2, 1, 1, 1] = 1
    u = ChannelUnion([0, 2])(m)
    assert u.shape == (1, 4, 4, 4) and u.sum() == 2
    assert ChannelUnion([0, 2])(torch.from_numpy(m)).sum() == 2


def test_flip_pairs_swaps_left_and_right_channels_in_ras():
    """An asymmetric phantom: a small left and a large right 'femoral head'."""
    shape = (40, 20, 20)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[0, 3] = -39.0  # x (RAS: + is the patient's right) from -39 to +39 mm
    m = np.zeros((2, *shape), np.uint8)  # channel 0 = left, channel 1 = right
    m[0, 5:8, 8:11, 8:11] = 1  # patient's left: negative x in RAS, 27 voxels
    m[1, 30:36, 6:12, 6:12] = 1  # patient's right: positive x, 216 voxels
    img = MetaTensor(torch.from_numpy(m), affine=torch.from_numpy(affine))
    out = FlipPairs(spatial_axis=0, pairs=[(0, 1)])(img)

    def centre_x(ch):
        # the augmented array is a mirrored patient seen in the original RAS frame (MONAI's Flip
        # also records the flip in the affine, for inversion; the network only sees the array)
        idx = np.argwhere(np.asarray(out[ch]) > 0).mean(0)
        return (affine @ np.array([*idx, 1.0]))[0]

    assert int(out[0].sum()) == 216 and int(out[1].sum()) == 27  # the organs traded sides...
    assert centre_x(0) < 0 < centre_x(1)  # ...and each channel still means its own side


def test_transforms_package_imports_nothing_else_from_vmat_monai():
    import subprocess
    import sys

    code = (
        "import sys, vmat_monai.transforms; "
        "print(sorted(m for m in sys.modules "
        "if m.startswith('vmat_monai') and not m.startswith('vmat_monai.transforms')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "['vmat_monai']"
