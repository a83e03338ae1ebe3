"""OpenKBP layout: reader, axes, per-case constraints, conversion, submission files (synthetic files)."""

from __future__ import annotations

import gzip
import json
import lzma
from dataclasses import replace

import nibabel as nib
import numpy as np
import pytest
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, Orientationd

from vmat_monai.cli import main
from vmat_monai.data.openkbp import (
    OPENKBP_SHAPE,
    OpenKBPInputError,
    from_openkbp_axes,
    open_csv,
    openkbp_constraints,
    read_openkbp_patient,
    read_sparse_csv,
    to_openkbp_axes,
    write_sparse_dose,
)
from vmat_monai.metrics.openkbp import dose_score
from vmat_monai.structures import OPENKBP_HN

# challenge axes: 0 -> posterior, 1 -> patient's left, 2 -> inferior
CENTRES = {
    "PTV70": (60, 64, 64),
    "PTV56": (60, 64, 64),
    "LeftParotid": (64, 84, 58),
    "RightParotid": (64, 44, 58),
    "Brainstem": (72, 64, 40),
    "SpinalCord": (76, 64, 90),
    "Mandible": (45, 64, 62),
}
RADII = {"PTV70": 8, "PTV56": 12, "LeftParotid": 5, "RightParotid": 5, "Brainstem": 4, "SpinalCord": 3, "Mandible": 5}


def _write_sparse(path, arr, mask_only=False):
    flat = arr.reshape(-1)
    idx = np.flatnonzero(flat)
    rows = [f"{i}," for i in idx] if mask_only else [f"{i},{flat[i]:.4f}" for i in idx]
    text = "\n".join([",data", *rows]) + "\n"
    if path.suffix in (".gz", ".xz"):
        with (gzip.open if path.suffix == ".gz" else lzma.open)(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)


def _patient(folder, ext: str, dose: bool = True, seed: int = 0):
    folder.mkdir(parents=True)
    i, j, k = np.meshgrid(*[np.arange(n) for n in OPENKBP_SHAPE], indexing="ij")
    body = ((i - 64) / 40.0) ** 2 + ((j - 64) / 45.0) ** 2 < 1
    ct = np.where(body, 1024 + 40, 0).astype(float)
    _write_sparse(folder / f"ct{ext}", ct)
    _write_sparse(folder / f"possible_dose_mask{ext}", body, mask_only=True)
    np.savetxt(folder / "voxel_dimensions.csv", [3.906, 3.906, 2.5])
    for name, c in CENTRES.items():
        m = ((i - c[0]) ** 2 + (j - c[1]) ** 2 + (k - c[2]) ** 2 <= RADII[name] ** 2) & body
        _write_sparse(folder / f"{name}{ext}", m, mask_only=True)
    if dose:
        d = 70 * np.exp(-(((i - 60) ** 2 + (j - 64) ** 2 + (k - 64) ** 2) / (2 * 12.0**2))) * body
        d += np.random.default_rng(seed).uniform(0, 0.01, d.shape) * body
        _write_sparse(folder / f"dose{ext}", d)


@pytest.fixture(scope="module")
def openkbp_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("openkbp")
    for n, ext in ((1, ".csv"), (2, ".csv.gz"), (3, ".csv.xz")):  # the three storage forms
        _patient(root / "train-pats" / f"pt_{n}", ext, seed=n)
    _patient(root / "validation-pats" / "pt_201", ".csv.gz", seed=201)
    return root


def test_reader_axes_and_values(openkbp_root):
    pt = read_openkbp_patient(openkbp_root / "train-pats" / "pt_2")  # .csv.gz files
    assert pt.ct_hu.shape == OPENKBP_SHAPE and pt.grid.spacing == (3.906, 3.906, 2.5)
    assert pt.ct_hu.min() == -1024 and pt.ct_hu.max() == pytest.approx(40)
    # our [z, y, x]: z superior, y posterior, x patient's left (LPS)
    left, right = (np.argwhere(pt.masks[n]).mean(0) for n in ("LeftParotid", "RightParotid"))
    stem, cord = (np.argwhere(pt.masks[n]).mean(0) for n in ("Brainstem", "SpinalCord"))
    mand = np.argwhere(pt.masks["Mandible"]).mean(0)
    assert left[2] > right[2] and stem[0] > cord[0] and mand[1] < cord[1]
    raw = read_sparse_csv(openkbp_root / "train-pats" / "pt_2" / "dose.csv.gz")
    np.testing.assert_array_equal(from_openkbp_axes(raw), pt.dose_gy)
    np.testing.assert_array_equal(to_openkbp_axes(pt.dose_gy), raw)


def test_plain_gzip_and_xz_files_read_the_same(openkbp_root, tmp_path):
    src = openkbp_root / "train-pats" / "pt_3"
    assert (src / "ct.csv.xz").is_file()
    plain = tmp_path / "pt_3"
    plain.mkdir()
    for f in src.iterdir():  # the same patient decompressed into plain .csv files
        name = f.name.removesuffix(".xz")
        (plain / name).write_text(open_csv(f).read() if f.suffix == ".xz" else f.read_text())
    a, b = read_openkbp_patient(src), read_openkbp_patient(plain)
    np.testing.assert_array_equal(a.ct_hu, b.ct_hu)
    np.testing.assert_array_equal(a.dose_gy, b.dose_gy)
    assert a.masks.keys() == b.masks.keys() and all(np.array_equal(a.masks[k], b.masks[k]) for k in a.masks)
    assert a.dose_gy.max() > 60


def test_constraint_rule_relaxes_goals_of_organs_near_targets(openkbp_root):
    pt = read_openkbp_patient(openkbp_root / "train-pats" / "pt_1")
    goals = openkbp_constraints(pt).as_goals()
    assert goals["ptv70"] == 70 and goals["ptv63"] == 0  # PTV63 absent
    assert goals["esophagus_Dmean"] == 0 and goals["larynx_Dmean"] == 0  # absent organs: no goal
    assert goals["cord_Dmax"] == 45 and goals["brainstem_Dmax"] == 54  # far from the PTVs
    # move the left parotid into the PTV: its mean-dose goal relaxes towards 70 Gy
    pt.masks["LeftParotid"] = pt.masks["PTV70"].copy()
    assert openkbp_constraints(pt).as_goals()["parotid_L_Dmean"] == pytest.approx(70.0)


def test_convert_format_openkbp_to_case_folders_and_monai(openkbp_root, tmp_path):
    out = tmp_path / "data"
    rc = main(["convert", "--input", str(openkbp_root), "--output", str(out), "--format", "openkbp",
               "--structure-set", "openkbp_hn"])  # fmt: skip
    assert rc == 0
    dl = json.loads((out / "datalist.json").read_text())
    assert [e["case_id"] for e in dl["test"]] == ["pt_201"]  # validation patients form the test split
    assert len(dl["training"]) + len(dl["validation"]) == 3 and len(dl["validation"]) >= 1
    assert len(dl["training"][0]["constraints"]) == 10
    info = json.loads((out / "pt_1" / "case.json").read_text())
    assert info["constraints"]["layout"] == "openkbp_hn" and info["source_format"] == "openkbp"
    # body is the possible-dose mask; the MAE in it is the challenge's dose score
    pt = read_openkbp_patient(openkbp_root / "train-pats" / "pt_1")
    body = np.asarray(nib.load(str(out / "pt_1" / "body.nii.gz")).dataobj).transpose(2, 1, 0) > 0
    np.testing.assert_array_equal(body, pt.possible_dose_mask)
    assert dose_score(pt.dose_gy + 1.0 * pt.possible_dose_mask, pt.dose_gy, body) == pytest.approx(1.0)
    # the job's scores of a predictions folder: the reference itself scores 0; +1 Gy in the mask scores 1 Gy
    from vmat_monai.data.datasets import load_datalist
    from vmat_monai.workflows.openkbp import openkbp_scores

    items = load_datalist(out / "datalist.json", "training")
    for shift, expected in ((0.0, 0.0), (1.0, 1.0)):
        for it in items:
            ref = nib.load(it["dose"])
            pdm = np.asarray(nib.load(it["body"]).dataobj) > 0
            (tmp_path / "pred" / it["case_id"]).mkdir(parents=True, exist_ok=True)
            pred = np.asarray(ref.dataobj) + shift * pdm
            nib.save(
                nib.Nifti1Image(pred.astype(np.float32), ref.affine),
                str(tmp_path / "pred" / it["case_id"] / "dose_pred.nii.gz"),
            )
        scored = openkbp_scores(tmp_path / "pred", items)
        assert scored.dose_score == pytest.approx(expected, abs=1e-5)
        assert (scored.dvh_score == pytest.approx(0.0, abs=1e-6)) == (shift == 0.0)
        # +1 Gy everywhere in the mask: every region's error is +1 Gy, every DVH kind is 1 Gy hot
        assert scored.regions["ME_far"] == pytest.approx(shift, abs=1e-5)
        assert scored.regions["MAE_targets"] == pytest.approx(shift, abs=1e-5)
        assert all(part["bias"] == pytest.approx(shift, abs=1e-4) for part in scored.dvh_parts.values())
        assert json.loads(json.dumps(scored.record()))["dose_error_by_region"]["ME_falloff"] == pytest.approx(shift)
    # through MONAI (RAS): the left parotid lies at lower axis-0 index than the right
    d = Compose([LoadImaged("masks"), EnsureChannelFirstd("masks"), Orientationd("masks", axcodes="RAS")])(
        {"masks": str(out / "pt_1" / "masks.nii.gz")}
    )["masks"]
    li, ri = OPENKBP_HN.index("LeftParotid"), OPENKBP_HN.index("RightParotid")
    assert np.argwhere(d[li].numpy() > 0)[:, 0].mean() < np.argwhere(d[ri].numpy() > 0)[:, 0].mean()


def test_submission_file_round_trip(openkbp_root, tmp_path):
    pt = read_openkbp_patient(openkbp_root / "validation-pats" / "pt_201")
    path = write_sparse_dose(pt.dose_gy * 1.01, pt.possible_dose_mask, tmp_path / "pt_201.csv")
    assert path.read_text().splitlines()[0] == ",data"
    back = from_openkbp_axes(read_sparse_csv(path))
    np.testing.assert_allclose(back, pt.dose_gy * 1.01 * pt.possible_dose_mask, rtol=1e-5, atol=1e-5)


def test_bad_patients_are_reported_and_the_batch_goes_on(openkbp_root, tmp_path, capsys):
    import shutil

    root = tmp_path / "kbp"
    shutil.copytree(openkbp_root / "train-pats", root / "train-pats")
    (root / "train-pats" / "pt_2" / "possible_dose_mask.csv.gz").unlink()
    (root / "train-pats" / "pt_3" / "dose.csv").write_text(",data\n99999999,1.0\n")
    rc = main(["convert", "--input", str(root), "--output", str(tmp_path / "d"), "--format", "openkbp",
               "--structure-set", "openkbp_hn"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 1 and "possible_dose_mask.csv(.gz/.xz) is missing" in err and "indices outside" in err
    assert (tmp_path / "d" / "pt_1" / "case.json").is_file()
    with pytest.raises(OpenKBPInputError, match=r"ct\.csv\(\.gz/\.xz\) is missing"):
        read_openkbp_patient(tmp_path / "nowhere")
    assert main(["convert", "--input", str(tmp_path / "nowhere"), "--output", str(tmp_path / "e"), "--format",
                 "openkbp", "--structure-set", "openkbp_hn"]) == 2  # fmt: skip


def test_openkbp_job_shares_a_disk_cache_and_names_its_runs(openkbp_root, tmp_path, monkeypatch):
    """--cache-dir, --name and --seed reach the training: memory+disk cache in that folder, model-<name>/."""
    import vmat_monai.engine.bounded_training as bt
    from vmat_monai.workflows.openkbp import OpenKBPOptions, run_openkbp

    seen = {}

    class Stop(Exception):
        pass

    def fake_train(datalist, out_dir, minutes, configs, extra=(), bundle="vmat_dose_unet"):
        seen.update(out_dir=out_dir, extra=list(extra), minutes=minutes, bundle=bundle, configs=configs)
        raise Stop

    monkeypatch.setattr(bt, "train_bounded", fake_train)
    opts = OpenKBPOptions(openkbp_root, tmp_path / "w", minutes=2, name="arc20s1", cache_dir=tmp_path / "c", seed=1)
    with pytest.raises(Stop):
        run_openkbp(opts, report=lambda line: None)
    assert seen["out_dir"] == tmp_path / "w" / "model-arc20s1" and seen["minutes"] == 2
    assert seen["extra"] == ["--seed", "1", "--cache", "memory+disk", "--cache_dir", str(tmp_path / "c")]
    assert seen["bundle"] == "vmat_dose_unet" and seen["configs"] == "cpu,openkbp,openkbp_cpu"
    with pytest.raises(Stop):  # the diffusion bundle trains through the same job, without the U-Net's CPU choices
        run_openkbp(replace(opts, bundle="vmat_dose_diffusion"), report=lambda line: None)
    assert seen["bundle"] == "vmat_dose_diffusion" and seen["configs"] == "cpu,openkbp"
    with pytest.raises(Stop):  # configs given replace the default; levers stack on them
        run_openkbp(replace(opts, configs="cpu,openkbp", lever="two_patches"), report=lambda line: None)
    assert seen["configs"] == "cpu,openkbp,two_patches"
    with pytest.raises(ValueError, match="vmat_dose_unet, vmat_dose_diffusion"):
        run_openkbp(replace(opts, bundle="unet"), report=lambda line: None)


def test_the_job_scores_its_predictions_and_records_them(openkbp_root, tmp_path, monkeypatch):
    """Known answer: a predictor that returns the planned dose scores 0 Gy on both scores; the job
    writes them with the run's settings to predictions-<name>/scores.json (no patient data)."""
    import shutil

    import vmat_monai.engine.bounded_training as bt
    import vmat_monai.engine.bundle as bundle_module
    from vmat_monai.workflows.openkbp import SCORES_FILE, OpenKBPOptions, run_openkbp

    def fake_train(datalist, out_dir, minutes, configs, extra=(), bundle="vmat_dose_unet"):
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "training.json").write_text(json.dumps({"summary": "3 min"}))
        return out_dir / "checkpoints" / "last.ckpt"

    class Planned:
        """Predicts each patient's planned dose."""

        reused = 0

        def predict_items(self, items, out):
            for it in items:
                (out / it["case_id"]).mkdir(parents=True)
                shutil.copy(it["dose"], out / it["case_id"] / "dose_pred.nii.gz")

    monkeypatch.setattr(bt, "train_bounded", fake_train)
    monkeypatch.setattr(bundle_module, "predictor_from_bundle", lambda *a, **k: Planned())
    opts = OpenKBPOptions(openkbp_root, tmp_path / "w", minutes=3, name="m3", seed=2)
    result = run_openkbp(opts, report=lambda line: None)
    assert result.n_patients == 1 and result.dose_score == 0.0 and result.dvh_score == 0.0
    record = json.loads((tmp_path / "w" / "predictions-m3" / SCORES_FILE).read_text())
    assert record["dose_score_gy"] == 0.0 and record["dvh_score_gy"] == 0.0 and record["n_patients"] == 1
    assert (record["bundle"], record["minutes"], record["seed"], record["training"]) == (
        "vmat_dose_unet",
        3,
        2,
        "3 min",
    )
    assert record["dose_error_by_region"]["MAE_falloff"] == 0.0
    assert record["dvh_score_parts"]["target D95"]["mae"] == 0.0
    assert "pt_201" not in json.dumps(record)
