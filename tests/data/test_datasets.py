"""Datasets from datalist.json with the preset chains (cache, random patches, bad paths)."""

from __future__ import annotations

import json

import pytest
import torch

from vmat_monai.data.datasets import chain_hashing, load_datalist, make_dataset
from vmat_monai.engine.inputs import model_inputs
from vmat_monai.structures import PROSTATE_SIB
from vmat_monai.transforms import train_transforms, val_transforms


def test_cached_training_dataset_gives_random_patches(converted):
    out, _ = converted
    spec = model_inputs(prior_channels=0)
    t = train_transforms(
        spec.target_channels, spec.mirror_pairs, patch_size=(32, 32, 32), num_samples=2, pixdim=(4.0, 4.0, 4.0)
    )
    ds = make_dataset(out / "datalist.json", "training", t, cache="memory")
    assert len(ds) >= 1
    a, b = ds[0], ds[0]
    assert len(a) == 2 and a[0]["input"].shape == (1 + PROSTATE_SIB.n_channels, 32, 32, 32)
    assert not all(torch.equal(x["input"], y["input"]) for x, y in zip(a, b, strict=True))  # fresh patches
    assert float(a[0]["dose"].max()) < 1.2  # dose / Rx
    # the cache is shared without copies: drawing patches must never change it
    # a patch carries what training uses, not the parts of the input again
    assert {"input", "dose", "masks", "body", "constraints"} <= set(a[0]) and not {"image", "sdf", "target"} & set(a[0])
    cached = {k: ds._cache[0][k].clone() for k in ("image", "sdf", "masks", "dose")}
    for _ in range(3):
        for patch in ds[0]:
            patch["input"] += 1.0  # even a caller writing into a patch leaves the cache alone
    assert all(torch.equal(ds._cache[0][k], v) for k, v in cached.items())


def test_memory_cache_filled_from_disk_skips_preprocessing_on_a_second_run(converted, tmp_path, monkeypatch):
    """memory+disk: the first run writes one file per case; a second run reads them back (no chain run)."""
    from monai.data import PersistentDataset

    out, _ = converted
    spec = model_inputs(prior_channels=0)
    t = train_transforms(spec.target_channels, patch_size=(16, 16, 16), pixdim=(6.0, 6.0, 6.0))
    first = make_dataset(out / "datalist.json", "training", t, cache="memory+disk", cache_dir=tmp_path / "c")
    files = sorted((tmp_path / "c").glob("*.pt"))
    assert len(files) == len(first) >= 1

    def must_not_run(self, item):
        raise AssertionError("the deterministic chain ran although the disk cache holds the case")

    monkeypatch.setattr(PersistentDataset, "_pre_transform", must_not_run)
    second = make_dataset(out / "datalist.json", "training", t, cache="memory+disk", cache_dir=tmp_path / "c")
    for k in ("image", "sdf", "masks", "dose"):
        assert second._cache[0][k].dtype == first._cache[0][k].dtype  # compact types kept on disk
        assert torch.equal(torch.as_tensor(second._cache[0][k]), torch.as_tensor(first._cache[0][k]))
    assert second[0][0]["input"].shape == (1 + PROSTATE_SIB.n_channels, 16, 16, 16)
    with pytest.raises(ValueError, match="needs cache_dir"):
        make_dataset(out / "datalist.json", "training", t, cache="memory+disk")
    with pytest.raises(ValueError, match="cache must be one of"):
        make_dataset(out / "datalist.json", "training", t, cache="ram")


def test_validation_dataset_full_volume(converted, tmp_path):
    out, _ = converted
    kw = {"target_channels": model_inputs().target_channels}
    ds = make_dataset(
        out / "datalist.json",
        "validation",
        val_transforms(kw["target_channels"], pixdim=(4.0, 4.0, 4.0)),
        cache="disk",
        cache_dir=tmp_path,
    )
    for item in ds:
        ptv = item["masks"][kw["target_channels"][0]] > 0
        assert float(item["dose"][0][ptv].mean()) == pytest.approx(1.03, abs=0.05)  # PTV70 mean ≈ 103 % Rx


def test_disk_cache_is_not_reused_by_another_chain(converted, tmp_path):
    """A chain with the beam dose prior, or with another voxel size, must not read volumes cached by another."""
    out, _ = converted
    spec = model_inputs()
    kw = {"target_channels": spec.target_channels, "target_levels": spec.target_levels}
    plain = val_transforms(kw["target_channels"], pixdim=(4.0, 4.0, 4.0))
    with_prior = val_transforms(kw["target_channels"], pixdim=(4.0, 4.0, 4.0), prior_levels=kw["target_levels"])
    first = make_dataset(out / "datalist.json", "training", plain, cache="disk", cache_dir=tmp_path)[0]
    second = make_dataset(out / "datalist.json", "training", with_prior, cache="disk", cache_dir=tmp_path)[0]
    assert "prior" not in first and first["input"].shape[0] == 1 + PROSTATE_SIB.n_channels
    assert second["input"].shape[0] == 2 + PROSTATE_SIB.n_channels
    ptv = second["masks"][kw["target_channels"][0]] > 0
    assert float(second["input"][-1][ptv].median()) == pytest.approx(1.0, abs=1e-3)
    nine = val_transforms(kw["target_channels"], pixdim=(4.0, 4.0, 4.0), prior_levels=kw["target_levels"],
                          prior_beams="openkbp_9field")  # fmt: skip
    assert chain_hashing(nine.transforms) != chain_hashing(with_prior.transforms)  # another protocol, another cache
    # same transform classes, other parameters: another voxel size is another cache entry
    coarse = val_transforms(kw["target_channels"], pixdim=(8.0, 8.0, 8.0))
    third = make_dataset(out / "datalist.json", "training", coarse, cache="disk", cache_dir=tmp_path)[0]
    assert all(a > b for a, b in zip(first["input"].shape[1:], third["input"].shape[1:], strict=True))
    assert chain_hashing(plain.transforms) == chain_hashing(
        val_transforms(kw["target_channels"], pixdim=(4.0, 4.0, 4.0)).transforms
    )  # but a rebuilt identical chain reads the cache


def test_wrong_path_in_datalist_names_case_and_file(converted, tmp_path):
    out, _ = converted
    dl = json.loads((out / "datalist.json").read_text())
    dl["training"][0]["dose"] = "nowhere/dose.nii.gz"
    bad = out / "bad_datalist.json"
    bad.write_text(json.dumps(dl))
    try:
        with pytest.raises(FileNotFoundError, match=r"case .*dose file .*nowhere"):
            load_datalist(bad, "training")
    finally:
        bad.unlink()
    with pytest.raises(FileNotFoundError, match="run `vmat-monai convert`"):
        load_datalist(tmp_path / "missing.json", "training")
    with pytest.raises(KeyError, match="unknown split"):
        load_datalist(out / "datalist.json", "train")
