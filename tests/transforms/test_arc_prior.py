"""The arc dose prior on phantoms with known symmetry, levels and attenuation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from vmat_monai.transforms import ArcDosePrior, ArcDosePriord

SP = 2.5
SHAPE = (64, 48, 32)  # 160 × 120 × 80 mm


def _axes():
    return np.meshgrid(*((np.arange(n) - (n - 1) / 2) * SP for n in SHAPE), indexing="ij")


def _meta(a: np.ndarray) -> MetaTensor:
    return MetaTensor(torch.from_numpy(np.asarray(a, np.float32)), affine=torch.diag(torch.tensor([SP, SP, SP, 1.0])))


@pytest.fixture(scope="module")
def phantom():
    """Water ellipse (80 × 55 mm semi-axes), PTV70 sphere r 15 mm inside a PTV56 sphere r 25 mm."""
    x, y, z = _axes()
    body = (x / 75) ** 2 + (y / 55) ** 2 <= 1
    r = np.sqrt(x**2 + y**2 + z**2)
    ct = np.where(body, 0.0, -1000.0)
    masks = np.stack([r <= 15, r <= 25, (x - 40) ** 2 + y**2 + z**2 <= 10**2])  # PTV70, PTV56, an organ
    return ct, masks, body, r


def _prior(ct, masks, body, **kw):
    return ArcDosePrior([0, 1], [70.0, 56.0], **kw)(_meta(ct[None]), _meta(masks), _meta(body[None]))


def test_prior_levels_symmetry_and_body(phantom):
    ct, masks, body, r = phantom
    out = _prior(ct, masks, body)
    assert isinstance(out, MetaTensor) and out.shape == (1, *SHAPE)
    torch.testing.assert_close(out.affine, _meta(ct).affine)
    p = out[0].numpy()
    assert np.median(p[masks[0]]) == pytest.approx(1.0, abs=1e-3)  # relative to the primary target
    assert np.median(p[masks[1] & ~masks[0]]) == pytest.approx(56 / 70, abs=0.06)  # fitted arc weights
    assert p[~body].max() == 0.0 and p.min() >= 0.0
    # a full uniform arc about the centre of a symmetric phantom is symmetric left-right and front-back
    zc = SHAPE[2] // 2
    np.testing.assert_allclose(p[:, :, zc], p[::-1, :, zc], atol=2e-3)
    np.testing.assert_allclose(p[:, :, zc], p[:, ::-1, zc], atol=2e-3)
    # and falls off away from the targets (shells of 10 mm, in the axial plane through the centre)
    shells = [p[:, :, zc][(r[:, :, zc] > a) & (r[:, :, zc] <= a + 10) & body[:, :, zc]].mean() for a in (30, 40, 50)]
    assert shells[0] > shells[1] > shells[2] > 0.05


def test_prior_follows_the_ct_density(phantom):
    """A bone slab on the patient's right lowers the dose on its side, not on the mirrored side."""
    ct, masks, body, _ = phantom
    x, y, _z = _axes()
    bone_ct = np.where((x < -40) & (x > -65) & (np.abs(y) < 40) & body, 1500.0, ct)
    p = _prior(bone_ct, masks, body)[0].numpy()
    zc, yc = SHAPE[2] // 2, (SHAPE[1] - 1) // 2
    i = int(np.argmin(np.abs(x[:, 0, 0] + 30)))  # 30 mm right of the target's centre, between bone and target
    j = SHAPE[0] - 1 - i  # its mirror image
    assert p[i, yc, zc] < 0.98 * p[j, yc, zc]
    plain = _prior(ct, masks, body)[0].numpy()
    assert abs(plain[i, yc, zc] - plain[j, yc, zc]) < 1e-3


def test_prior_inputs_checked(phantom):
    ct, masks, body, _ = phantom
    with pytest.raises(ValueError, match="non-empty target"):
        _prior(ct, np.zeros_like(masks), body)
    with pytest.raises(ValueError, match="differ in shape"):
        ArcDosePrior([0], [70.0])(_meta(ct[None]), _meta(masks[:, :-1]), _meta(body[None]))
    with pytest.raises(ValueError, match="one dose level per target"):
        ArcDosePrior([0, 1], [70.0])
    # a missing secondary target is skipped: the prior is the primary's arc alone
    only70 = masks.copy()
    only70[1] = False
    p = _prior(ct, only70, body)[0].numpy()
    assert np.median(p[only70[0]]) == pytest.approx(1.0, abs=1e-3)


def test_dictionary_wrapper_and_plain_arrays(phantom):
    ct, masks, body, _ = phantom
    d = {"image": _meta(ct[None]), "masks": _meta(masks), "body": _meta(body[None])}
    out = ArcDosePriord("image", target_channels=[0, 1], target_levels=[70, 56], grid_mm=5.0)(d)
    assert set(out) == {"image", "masks", "body", "prior"} and out["prior"].shape == (1, *SHAPE)
    np.testing.assert_allclose(out["prior"].numpy(), _prior(ct, masks, body).numpy(), atol=1e-6)
    # numpy needs an explicit spacing: without an affine the transform refuses to guess
    with pytest.raises(ValueError, match="spacing unknown"):
        ArcDosePrior([0], [70.0])(ct[None], masks, body[None])


def test_three_sectors_split_the_arc_by_entry_side(phantom):
    ct, masks, body, _ = phantom
    one = _prior(ct, masks, body)[0].numpy()
    three = _prior(ct, masks, body, sectors=3).numpy()
    assert three.shape == (3, *SHAPE)
    np.testing.assert_allclose(three.sum(axis=0), one, atol=1e-4)  # the same dose, split
    xc, zc = (SHAPE[0] - 1) // 2, SHAPE[2] // 2
    ant = SHAPE[1] - 1 - np.argmax(body[xc, ::-1, zc])  # the most anterior body voxel (RAS: +y anterior)
    post = np.argmax(body[xc, :, zc])
    for ch, surface in ((0, ant - 4), (1, post + 4)):  # 10 mm under the entry surface: past the build-up
        assert three[ch, xc, surface, zc] > 1.5 * three[1 - ch, xc, surface, zc]
    # left and right share the lateral channel: the split stays symmetric under a left-right flip
    np.testing.assert_allclose(three[:, :, :, zc], three[:, ::-1, :, zc], atol=2e-3)
    with pytest.raises(ValueError, match="sectors must be 1 or 3"):
        ArcDosePrior([0], [70.0], sectors=4)
