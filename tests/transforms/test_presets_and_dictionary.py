"""Dictionary transforms and preset chains on small NIfTI cases (alignment, inversion, MONAI stock use)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vmat_monai.data.case_folder import save_nifti
from vmat_monai.geometry import Grid
from vmat_monai.structures import PROSTATE_SIB
from vmat_monai.transforms import (
    ConstraintToChannelsd,
    ConstraintVectord,
    DoseToRelatived,
    RandFlipPairsd,
    inference_transforms,
    train_transforms,
    val_transforms,
)

TARGETS = [PROSTATE_SIB.index(t) for t in PROSTATE_SIB.targets]
PAIRS = [(PROSTATE_SIB.index(a), PROSTATE_SIB.index(b)) for a, b in PROSTATE_SIB.mirror_pairs]
MARK = (14, 20, 17)  # [z, y, x] of the marker voxel


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """A 30×36×40 case at 2.5 mm with a marker voxel shared by CT, dose and the PTV masks."""
    d = tmp_path_factory.mktemp("case")
    grid = Grid((-50.0, -45.0, -37.5), (2.5, 2.5, 2.5), (30, 36, 40))
    z, y, x = np.indices(grid.shape)
    ct = np.full(grid.shape, 40.0, np.float32)
    ct[MARK] = 1400.0
    r = np.sqrt((z - MARK[0]) ** 2 + (y - MARK[1]) ** 2 + (x - MARK[2]) ** 2)
    dose = np.clip(70.0 - 2.0 * r, 0, None).astype(np.float32)
    dose[MARK] = 80.0
    masks = np.zeros((PROSTATE_SIB.n_channels, *grid.shape), np.uint8)
    masks[TARGETS[0]] = r <= 3
    masks[TARGETS[1]] = r <= 5
    fl, fr = PAIRS[0]
    masks[fl, 10:16, 15:20, 28:32] = 1  # patient's left: +x in LPS (high x index here)
    masks[fr, 10:18, 15:24, 3:10] = 1  # patient's right, larger
    body = np.ones(grid.shape, np.uint8)
    for name, arr, dt in (
        ("ct", ct, np.int16),
        ("dose", dose, np.float32),
        ("masks", masks, np.uint8),
        ("body", body, np.uint8),
    ):
        save_nifti(arr, grid, d / f"{name}.nii.gz", dt)
    return {
        "image": str(d / "ct.nii.gz"),
        "dose": str(d / "dose.nii.gz"),
        "masks": str(d / "masks.nii.gz"),
        "body": str(d / "body.nii.gz"),
        "constraints": [1.0, 0.8, 0, 0.5, 0.35, 0.2, 75 / 70, 0.5, 0.35, 0.25, 0.1, 0.39, 45 / 70],
        "prescription_gy": 70.0,
    }


def _argmax(t):
    return np.unravel_index(int(torch.argmax(torch.as_tensor(t)[0])), tuple(t.shape[1:]))


def test_train_chain_keeps_ct_dose_masks_and_distances_aligned(case):
    t = train_transforms(
        TARGETS, PAIRS, patch_size=(16, 16, 16), num_samples=4, pixdim=(2.5, 2.5, 2.5), sdf_margin_mm=20
    )
    for seed in range(6):
        t.set_random_state(seed)
        for s in t(dict(case)):
            assert s["input"].shape == (1 + PROSTATE_SIB.n_channels, 16, 16, 16)
            assert s["dose"].shape == (1, 16, 16, 16) and s["constraints"].shape == (13,)
            ct = s["input"][:1]
            if float(ct.max()) < 0.9:  # the marker is outside this patch
                continue
            pos = _argmax(ct)
            assert _argmax(s["dose"]) == pos
            assert float(s["dose"][0][pos]) == pytest.approx(80.0 / 70.0, rel=1e-4)
            assert s["masks"][TARGETS[0]][pos] == 1
            sdf70 = s["input"][1 + TARGETS[0]]
            assert float(sdf70[pos]) < 0  # inside PTV70
            assert float(sdf70[pos]) == pytest.approx(float(sdf70.min()), abs=0.2)


def test_beam_dose_prior_is_the_last_input_channel_and_moves_with_the_masks(case):
    levels = [PROSTATE_SIB.targets[t] for t in PROSTATE_SIB.targets]
    v = val_transforms(TARGETS, pixdim=(2.5, 2.5, 2.5), prior_levels=levels)(dict(case))
    assert v["input"].shape[0] == 1 + PROSTATE_SIB.n_channels + 1
    assert "prior" not in v and "sdf" not in v  # validation keeps the input only once
    inf = inference_transforms(TARGETS, pixdim=(2.5, 2.5, 2.5), prior_levels=levels)(dict(case))
    assert v["input"].dtype == torch.float16 and v["masks"].dtype == torch.uint8  # compact validation cache
    np.testing.assert_allclose(np.asarray(v["input"][-1].float()), np.asarray(inf["prior"][0]), rtol=1e-3, atol=1e-4)
    ptv70 = np.asarray(v["masks"][TARGETS[0]]) > 0
    assert np.median(np.asarray(v["input"][-1].float())[ptv70]) == pytest.approx(1.0, abs=2e-3)  # float16
    t = train_transforms(TARGETS, PAIRS, patch_size=(16, 16, 16), num_samples=4, prior_levels=levels)
    seen = 0
    for seed in range(4):
        t.set_random_state(seed)
        for s in t(dict(case)):
            assert s["input"].shape == (1 + PROSTATE_SIB.n_channels + 1, 16, 16, 16)
            prior, m70 = np.asarray(s["input"][-1]), np.asarray(s["masks"][TARGETS[0]]) > 0
            outside = np.asarray(s["masks"][TARGETS[1]]) == 0
            if m70.any() and outside.any():  # crops and flips keep prior and masks aligned
                assert prior[m70].mean() > 0.9 > prior[outside].mean()
                seen += 1
    assert seen > 0
    with_prior = t.transforms[[type(x).__name__ for x in t.transforms].index("BeamDosePriord")]
    assert with_prior.prior.levels.tolist() == levels
    # split by the beams' entry side: three channels that add up to the one-channel prior
    v3 = val_transforms(TARGETS, pixdim=(2.5, 2.5, 2.5), prior_levels=levels, prior_sectors=3)(dict(case))
    assert v3["input"].shape[0] == 1 + PROSTATE_SIB.n_channels + 3
    three, one = np.asarray(v3["input"][-3:].float()).sum(axis=0), np.asarray(v["input"][-1].float())
    np.testing.assert_allclose(three, one, atol=3e-3)  # float16 channels


def test_rotation_turns_every_channel_together_about_the_long_axis(case):
    """Same seed with and without rotation: same crops and flips (each transform draws from its own
    stream), so the marker must keep its axial slice and its distance from the patch centre."""
    kw = {"patch_size": (24, 24, 24), "num_samples": 3, "pixdim": (2.5, 2.5, 2.5), "sdf_margin_mm": 20}
    plain, turned = train_transforms(TARGETS, PAIRS, **kw), train_transforms(TARGETS, PAIRS, rotate_deg=40, **kw)
    centre = np.array([11.5, 11.5])
    moved = 0
    for seed in range(5):
        plain.set_random_state(seed)
        turned.set_random_state(seed)
        for a, b in zip(plain(dict(case)), turned(dict(case)), strict=True):
            if float(a["input"][0].max()) < 0.9 or float(b["input"][0].max()) < 0.5:
                continue  # the marker is outside the patch (or turned out of it)
            pa, pb = np.array(_argmax(a["input"][:1])), np.array(_argmax(b["input"][:1]))
            assert pb[2] == pa[2]  # same axial slice: the turn is about the S-I axis
            ra, rb = np.linalg.norm(pa[:2] - centre), np.linalg.norm(pb[:2] - centre)
            assert abs(ra - rb) <= 1.5
            assert np.abs(np.array(_argmax(b["dose"])) - pb).max() <= 1  # dose turned with the CT
            moved += int(ra > 3 and np.abs(pb - pa).max() >= 1)
            # masks (nearest) and distances (trilinear) stay consistent: inside <=> negative distance
            m, sdf = np.asarray(b["masks"][PAIRS[0][1]]) > 0, np.asarray(b["input"][1 + PAIRS[0][1]])
            if m.sum() > 20:
                assert ((sdf < 0) == m).mean() > 0.97
    assert moved > 0
    with pytest.raises(ValueError, match="rotate_deg"):
        train_transforms(TARGETS, PAIRS, rotate_deg=-5)


def test_patches_off_the_targets_can_be_centred_in_the_body(tmp_path):
    """A 40³ volume whose body is an 8³ block in the middle: with ``centres_in_body`` every patch
    that is not centred on a target is centred on a body voxel (its centre voxel, index 4 of an 8³
    patch, is body); without it most such patches hold no body at all (the block is 0.8 % of the
    volume and of the patch centres' range)."""
    grid = Grid((0.0, 0.0, 0.0), (2.5, 2.5, 2.5), (40, 40, 40))
    body = np.zeros(grid.shape, np.uint8)
    body[16:24, 16:24, 16:24] = 1
    masks = np.zeros((PROSTATE_SIB.n_channels, *grid.shape), np.uint8)
    masks[TARGETS[0], 19:21, 19:21, 19:21] = 1
    files = {"ct": (np.zeros(grid.shape), np.int16), "dose": (body * 70.0, np.float32)}
    files |= {"masks": (masks, np.uint8), "body": (body, np.uint8)}
    for name, (arr, dt) in files.items():
        save_nifti(arr, grid, tmp_path / f"{name}.nii.gz", dt)
    item = {k: str(tmp_path / f"{f}.nii.gz") for k, f in (("image", "ct"), ("dose", "dose"), ("masks", "masks"))}
    item |= {"body": str(tmp_path / "body.nii.gz"), "constraints": [1.0] * 13, "prescription_gy": 70.0}
    kw = {"patch_size": (8, 8, 8), "num_samples": 8, "pos_fraction": 0.0, "flip_prob": 0.0}
    inside, anywhere = (train_transforms(TARGETS, PAIRS, centres_in_body=c, **kw) for c in (True, False))
    empty = 0
    for seed in range(4):
        inside.set_random_state(seed)
        anywhere.set_random_state(seed)
        for patch in inside(dict(item)):
            assert patch["body"][0, 4, 4, 4] == 1
            assert np.asarray(patch["masks"][TARGETS[0]])[4, 4, 4] == 0  # not centred on the target
        empty += sum(int(patch["body"].sum() == 0) for patch in anywhere(dict(item)))
    assert empty > 16  # of 32 patches


def test_left_right_flip_after_ras_keeps_channel_meaning(case):
    """Femur_L (small) sits at the patient's left = negative RAS x = low index on axis 0."""
    d = inference_transforms(TARGETS, pixdim=(2.5, 2.5, 2.5))(dict(case))
    fl, fr = PAIRS[0]

    def side(m):
        return float(np.argwhere(np.asarray(m) > 0)[:, 0].mean())

    mid = d["masks"].shape[1] / 2
    assert side(d["masks"][fl]) < mid < side(d["masks"][fr])
    n_left, n_right = int(d["masks"][fl].sum()), int(d["masks"][fr].sum())
    out = RandFlipPairsd(["masks", "sdf", "image"], prob=1.0, pairs=PAIRS, pair_keys=["masks", "sdf"])(d)
    assert side(out["masks"][fl]) < mid < side(out["masks"][fr])
    assert int(out["masks"][fl].sum()) == n_right and int(out["masks"][fr].sum()) == n_left
    np.testing.assert_allclose(np.asarray(out["sdf"][fl]), np.flip(np.asarray(d["sdf"][fr]), axis=0))


def test_flip_swaps_one_sided_goals_with_their_organs():
    """A flipped patch carries each parotid's goal with that parotid's (swapped) channel."""
    x = torch.zeros(2, 4, 2, 2)
    x[0, 0] = 1.0  # "left" organ at low x
    vec = torch.tensor([0.1, 0.2, 0.3, 0.4])
    t = RandFlipPairsd(["m"], prob=1.0, pairs=[(0, 1)], pair_keys="m", vector_pairs=[(1, 2)])
    out = t({"m": x, "constraints": vec})
    assert float(out["m"][1, -1].sum()) == 4.0  # the organ moved to high x and to the other channel
    assert out["constraints"].tolist() == pytest.approx([0.1, 0.3, 0.2, 0.4])
    assert vec.tolist() == pytest.approx([0.1, 0.2, 0.3, 0.4])  # the input is not changed in place
    assert t({"m": x, "constraints": [1, 2, 3, 4]})["constraints"] == [1, 3, 2, 4]
    assert RandFlipPairsd(["m"], prob=1.0, vector_pairs=[(1, 2)])({"m": x})["m"].shape == x.shape  # no vector


def test_train_chain_flips_goals_with_the_masks(case):
    """Through the preset: on a flip, entries ``constraint_pairs`` trade places, the others stay."""
    kw = dict(patch_size=(16, 16, 16), num_samples=2, flip_prob=1.0, constraint_pairs=[(3, 4)])
    out = train_transforms(TARGETS, PAIRS, **kw)(dict(case))
    expected = list(case["constraints"])
    expected[3], expected[4] = expected[4], expected[3]
    for patch in out:
        assert patch["constraints"].tolist() == pytest.approx(expected)
    kw["flip_prob"] = 0.0
    for patch in train_transforms(TARGETS, PAIRS, **kw)(dict(case)):
        assert patch["constraints"].tolist() == pytest.approx(list(case["constraints"]))


def test_val_chain_and_invertd_return_dose_in_gy(case):
    import nibabel as nib
    from monai.transforms import Invertd

    t = val_transforms(TARGETS, pixdim=(2.5, 2.5, 2.5))
    d = t(dict(case))
    assert d["input"].shape[0] == 1 + PROSTATE_SIB.n_channels
    assert float(d["dose"].max()) == pytest.approx(80.0 / 70.0, rel=1e-5)
    back = Invertd(keys="dose", transform=t, orig_keys="dose", nearest_interp=False)(d)["dose"]
    orig = np.asarray(nib.load(case["dose"]).dataobj)  # x, y, z on disk
    np.testing.assert_allclose(np.asarray(back[0]), orig, atol=1e-4)


def test_dose_to_relatived_inverse_and_errors():
    d = {"dose": torch.full((1, 2, 2, 2), 35.0), "prescription_gy": 70.0}
    t = DoseToRelatived("dose")
    out = t(d)
    assert torch.allclose(out["dose"], torch.full((1, 2, 2, 2), 0.5))
    assert torch.allclose(t.inverse(out)["dose"], torch.full((1, 2, 2, 2), 35.0))
    with pytest.raises(ValueError, match="positive prescription"):
        DoseToRelatived("dose")({"dose": torch.ones(1, 2, 2, 2)})
    assert torch.allclose(
        DoseToRelatived("dose", prescription_gy=50.0)({"dose": torch.ones(1, 2, 2, 2) * 50})["dose"],
        torch.ones(1, 2, 2, 2),
    )


def test_constraint_dictionary_transforms():
    d = ConstraintVectord("constraints")({"constraints": list(range(13))})
    assert d["constraints"].dtype == torch.float32 and d["constraints"].shape == (13,)
    with pytest.raises(ValueError, match="expected 13"):
        ConstraintVectord("constraints")({"constraints": [1.0, 2.0]})
    out = ConstraintToChannelsd("image")({"image": torch.zeros(1, 3, 4, 5), "constraints": d["constraints"]})
    assert out["image"].shape == (14, 3, 4, 5) and float(out["image"][13, 0, 0, 0]) == 12.0


def test_rand_flip_pairs_draws_once_for_all_keys_and_is_seeded():
    x = torch.arange(2 * 4 * 2 * 2, dtype=torch.float32).reshape(2, 4, 2, 2)
    data = {"a": x.clone(), "m": x.clone()}
    t = RandFlipPairsd(["a", "m"], prob=0.5, pairs=[(0, 1)], pair_keys="m")
    results = []
    for _ in range(10):
        out = t(data)
        flipped = not torch.equal(out["a"], x)
        assert flipped == (not torch.equal(out["m"], x))  # one draw for both keys
        if flipped:
            assert torch.equal(out["a"], torch.flip(x, dims=[1]))
            assert torch.equal(out["m"], torch.flip(x, dims=[1])[[1, 0]])
        results.append(flipped)
    assert any(results) and not all(results)
    a = [not torch.equal(t.set_random_state(3)(data)["a"], x) for _ in range(1)]
    b = [not torch.equal(t.set_random_state(3)(data)["a"], x) for _ in range(1)]
    assert a == b


def test_readme_reuse_example_runs_in_a_stock_monai_chain(converted, tmp_path, monkeypatch):
    """The README's "Reuse the transforms" block, executed as written on a converted case folder."""
    import os
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Reuse the transforms", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    data, _ = converted
    case_dir = next(p.parent for p in sorted(data.glob("*/case.json")))
    os.symlink(case_dir, tmp_path / "case")
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    out = scope["sample"]
    assert out["sdf"].shape == (8, 24, 24, 24) and out["image"].shape == (1, 24, 24, 24)
    assert -1.0 <= float(out["sdf"].min()) and float(out["sdf"].max()) <= 1.0
