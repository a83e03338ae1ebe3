"""The beam dose prior on phantoms with known symmetry, levels, attenuation and beam geometry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from vmat_monai.transforms import Beam, BeamArrangement, BeamDosePrior, BeamDosePriord, protocol

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
    return BeamDosePrior([0, 1], [70.0, 56.0], **kw)(_meta(ct[None]), _meta(masks), _meta(body[None]))


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
        BeamDosePrior([0], [70.0])(_meta(ct[None]), _meta(masks[:, :-1]), _meta(body[None]))
    with pytest.raises(ValueError, match="one dose level per target"):
        BeamDosePrior([0, 1], [70.0])
    # a missing secondary target is skipped: the prior is the primary's arc alone
    only70 = masks.copy()
    only70[1] = False
    p = _prior(ct, only70, body)[0].numpy()
    assert np.median(p[only70[0]]) == pytest.approx(1.0, abs=1e-3)


def test_dictionary_wrapper_and_plain_arrays(phantom):
    ct, masks, body, _ = phantom
    d = {"image": _meta(ct[None]), "masks": _meta(masks), "body": _meta(body[None])}
    out = BeamDosePriord("image", target_channels=[0, 1], target_levels=[70, 56], grid_mm=5.0)(d)
    assert set(out) == {"image", "masks", "body", "prior"} and out["prior"].shape == (1, *SHAPE)
    np.testing.assert_allclose(out["prior"].numpy(), _prior(ct, masks, body).numpy(), atol=1e-6)
    # numpy needs an explicit spacing: without an affine the transform refuses to guess
    with pytest.raises(ValueError, match="spacing unknown"):
        BeamDosePrior([0], [70.0])(ct[None], masks, body[None])


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
        BeamDosePrior([0], [70.0], sectors=4)


# -- beam arrangements ---------------------------------------------------------------------------


def _cylinder(n: int = 48, sp: float = 2.5):
    """Water cylinder (r 50 mm) on a square axial grid, a PTV sphere (r 10 mm) at its centre."""
    x, y, z = np.meshgrid(*((np.arange(k) - (k - 1) / 2) * sp for k in (n, n, 16)), indexing="ij")
    body = x**2 + y**2 <= 50**2
    target = x**2 + y**2 + z**2 <= 10**2
    return np.where(body, 0.0, -1000.0), target[None], body, x, y, z


def _one(beams, ct, target, body, **kw):
    return BeamDosePrior([0], [70.0], beams=beams, **kw)(_meta(ct[None]), _meta(target), _meta(body[None]))[0].numpy()


def test_one_static_beam_in_water_is_a_band_with_depth_fall_off():
    """Gantry 0 (HFS): the beam enters anteriorly (+y in RAS) and travels posteriorly."""
    ct, target, body, x, y, z = _cylinder()
    arr = BeamArrangement((Beam(0.0, 0.0),), "test")
    p = _one(arr, ct, target, body, scatter_fraction=0.0)
    zc, xc = 8, 24
    # outside the field (10 mm target + 5 mm margin + 4 penumbra sigmas): nothing without scatter
    outside = (np.abs(x) > 10 + 5 + 4 * 3 + 5) & body  # one more coarse voxel (5 mm) for the interpolation
    assert p[outside].max() < 1e-3
    assert p[(np.abs(x) < 5) & (np.abs(z) < 5) & body].min() > 0.3  # the whole axis is in the field
    # along the axis past the build-up: exp(-mu d) and inverse square about the isocentre
    axis = p[xc, :, zc]
    ys = y[xc, :, zc]
    a, b = int(np.argmin(np.abs(ys - 20))), int(np.argmin(np.abs(ys + 30)))
    depth_a, depth_b = 50 - ys[a], 50 - ys[b]  # from the anterior surface at y = +50 mm
    expected = np.exp(-0.0045 * (depth_b - depth_a)) * ((1000 - ys[a]) / (1000 - ys[b])) ** 2
    expected *= (1 - 0.6 * np.exp(-depth_b / 8)) / (1 - 0.6 * np.exp(-depth_a / 8))
    assert axis[b] / axis[a] == pytest.approx(expected, rel=0.03)
    assert axis[int(np.argmin(np.abs(ys - 40)))] > axis[int(np.argmin(np.abs(ys + 40)))]  # entry side is hotter


def test_rotating_the_gantry_rotates_the_prior():
    """Gantry 90 (HFS) enters from the patient's left, -x in RAS: the gantry-0 prior turned by 90 degrees."""
    ct, target, body, *_ = _cylinder()
    p0 = _one(BeamArrangement((Beam(0.0, 0.0),), "test"), ct, target, body)
    p90 = _one(BeamArrangement((Beam(90.0, 90.0),), "test"), ct, target, body)
    turned = np.swapaxes(p0[:, ::-1], 0, 1)  # (x, y) -> (-y, x): anterior goes to the patient's left
    np.testing.assert_allclose(p90, turned, atol=0.03)
    assert p90[5, 24, 8] > 1.25 * p90[-6, 24, 8]  # 4 mm inside the left surface vs the right: attenuated exit
    # feet-first supine mirrors left and right: gantry 90 then enters from the patient's right
    ffs = _one(BeamArrangement((Beam(90.0, 90.0),), "test", "FFS"), ct, target, body)
    np.testing.assert_allclose(ffs, p90[::-1], atol=0.03)


def test_full_arc_reproduces_the_0_6_arc_prior():
    """The 0.6 prior (one uniform arc, 72 angles) on a small phantom with bone, stored when it was
    replaced; the arc360 protocol samples the same 72 angles."""
    ref = np.load(Path(__file__).parent / "data" / "arc_prior_v0.6.npz")["prior"]
    sp, shape = 5.0, (32, 24, 16)
    x, y, z = np.meshgrid(*((np.arange(n) - (n - 1) / 2) * sp for n in shape), indexing="ij")
    body = (x / 75) ** 2 + (y / 55) ** 2 <= 1
    r = np.sqrt((x - 5) ** 2 + y**2 + z**2)
    ct = np.where(body, np.where(x < -45, 700.0, 0.0), -1000.0)
    masks = np.stack([r <= 15, r <= 25])

    def meta(a):
        return MetaTensor(
            torch.from_numpy(np.asarray(a, np.float32)), affine=torch.diag(torch.tensor([sp, sp, sp, 1.0]))
        )

    p = BeamDosePrior([0, 1], [70.0, 56.0], beams="arc360")(meta(ct[None]), meta(masks), meta(body[None]))
    np.testing.assert_allclose(p.numpy(), ref, atol=1e-4)  # the same 72 angles; only float rounding differs


def test_arrangements_sample_arcs_and_weight_beams():
    arc = Beam(181.0, 179.0, "CW")
    assert arc.span_deg() == pytest.approx(358.0)
    a = arc.angles(5.0)
    assert a.size == 72 and np.all(np.diff(np.unwrap(np.deg2rad(a))) > 0)  # clockwise = increasing angle
    half = Beam(270.0, 90.0, "CC").angles(10.0)  # counter-clockwise through 180
    assert half.size == 18 and np.all((half <= 270) & (half >= 90))
    arr = BeamArrangement((Beam(0.0, 0.0, weight=3.0), Beam(180.0, 180.0)), "test")
    ang, w = arr.weighted_angles()
    assert ang.tolist() == [0.0, 180.0] and w.tolist() == pytest.approx([0.75, 0.25])
    assert BeamArrangement.from_dict(arr.to_dict()) == arr
    nine = protocol("openkbp_9field")
    assert (
        nine.weighted_angles()[0].tolist() == [40.0 * k for k in range(9)] and nine.source == "protocol:openkbp_9field"
    )
    assert "9 static" in nine.describe() or "static" in nine.describe()
    with pytest.raises(KeyError, match="known"):
        protocol("tomotherapy")
    with pytest.raises(ValueError, match="patient position"):
        BeamArrangement((Beam(0.0, 0.0),), "test", "HFP")
    with pytest.raises(ValueError, match="weight must be positive"):
        Beam(0.0, 0.0, weight=0.0)


def test_dictionary_wrapper_uses_the_case_beams_and_consumes_them(phantom):
    ct, masks, body, _ = phantom
    own = BeamArrangement((Beam(0.0, 0.0),), "rtplan")
    d = {"image": _meta(ct[None]), "masks": _meta(masks), "body": _meta(body[None]), "beams": own.to_dict()}
    t = BeamDosePriord("image", target_channels=[0, 1], target_levels=[70, 56])
    out = t(dict(d))
    assert "beams" not in out  # consumed: a nested dict would not batch
    np.testing.assert_allclose(out["prior"].numpy(), _prior(ct, masks, body, beams=own).numpy(), atol=1e-6)
    forced = BeamDosePriord("image", target_channels=[0, 1], target_levels=[70, 56], use_case_beams=False)(dict(d))
    np.testing.assert_allclose(forced["prior"].numpy(), _prior(ct, masks, body).numpy(), atol=1e-6)  # the protocol
    assert "beams" not in forced
