"""Bounded training: a finished training is reused only with the same configuration."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from vmat_monai.engine.bounded_training import TRAINING_RECORD, recorded_configs, train_bounded
from vmat_monai.engine.bundle import config_files


def _finished(out: Path, digest: str, configs: str = "cpu") -> Path:
    ckpt = out / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"weights")
    record = {"summary": "15.0 min wall, 30 epochs", "configs": configs, "minutes": 15, "config_sha256": digest}
    (out / TRAINING_RECORD).write_text(json.dumps(record))
    return ckpt


def test_finished_training_is_reused_with_the_same_configuration(tmp_path, capsys):
    digest = hashlib.sha256(b"".join(Path(f).read_bytes() for f in config_files("train", "cpu"))).hexdigest()
    ckpt = _finished(tmp_path / "model", digest)
    assert train_bounded(tmp_path / "datalist.json", tmp_path / "model", 15, "cpu") == ckpt
    assert "reusing" in capsys.readouterr().out


def test_training_with_a_changed_configuration_is_refused(tmp_path):
    ckpt = _finished(tmp_path / "model", "0" * 64)
    with pytest.raises(RuntimeError, match=r"another version of the 'cpu' configuration.*--fresh"):
        train_bounded(tmp_path / "datalist.json", tmp_path / "model", 15, "cpu")
    assert ckpt.read_bytes() == b"weights"  # nothing lost


def test_training_with_another_config_names_the_one_it_was_trained_with(tmp_path):
    digest = hashlib.sha256(b"".join(Path(f).read_bytes() for f in config_files("train", "cpu"))).hexdigest()
    ckpt = _finished(tmp_path / "model", digest, "cpu")
    with pytest.raises(RuntimeError, match=r"trained with --config cpu, not cpu,residual: pass --config cpu.*--fresh"):
        train_bounded(tmp_path / "datalist.json", tmp_path / "model", 15, "cpu,residual")
    assert ckpt.read_bytes() == b"weights"
    stale = _finished(tmp_path / "stale", "0" * 64, "cpu")  # its configs changed since: only --fresh helps
    with pytest.raises(RuntimeError, match=r"trained with --config cpu, not cpu,residual: --fresh") as err:
        train_bounded(tmp_path / "datalist.json", tmp_path / "stale", 15, "cpu,residual")
    assert "to reuse it" not in str(err.value) and stale.read_bytes() == b"weights"


def test_a_checkpoint_names_its_config_through_the_training_record(tmp_path, monkeypatch):
    lever = tmp_path / "levers" / "mine.json"
    lever.parent.mkdir()
    lever.write_text("{}")
    out = tmp_path / "model"

    def fake_training(cmd, check):  # stands in for `monai.bundle run training`
        (out / "checkpoints").mkdir(parents=True)
        (out / "checkpoints" / "last.ckpt").write_bytes(b"weights")

    monkeypatch.setattr("vmat_monai.engine.bounded_training.subprocess.run", fake_training)
    monkeypatch.chdir(tmp_path)
    ckpt = train_bounded(tmp_path / "datalist.json", out, 15, "cpu,residual,levers/mine.json")
    monkeypatch.chdir(tmp_path / "levers")  # predicting from another folder: the JSON path was recorded absolute
    assert recorded_configs(ckpt) == f"cpu,residual,{lever.resolve()}"
    assert config_files("inference", recorded_configs(ckpt))[-1] == str(lever.resolve())
    assert recorded_configs(tmp_path / "elsewhere" / "last.ckpt") is None


def test_the_diffusion_bundle_trains_through_the_same_record(tmp_path, monkeypatch):
    """bundle="vmat_dose_diffusion" runs that bundle's train.json, records the bundle, and a U-Net
    training into the same folder is refused instead of reusing the diffusion model."""
    out, seen = tmp_path / "model", {}

    def fake_training(cmd, check):
        seen["cmd"] = cmd
        (out / "checkpoints").mkdir(parents=True)
        (out / "checkpoints" / "last.ckpt").write_bytes(b"weights")

    monkeypatch.setattr("vmat_monai.engine.bounded_training.subprocess.run", fake_training)
    ckpt = train_bounded(tmp_path / "datalist.json", out, 15, "cpu,residual", bundle="vmat_dose_diffusion")
    files = seen["cmd"][seen["cmd"].index("--config_file") + 1]
    assert "vmat_dose_diffusion/configs/train.json" in files and "vmat_dose_diffusion/configs/residual.json" in files
    assert json.loads((out / TRAINING_RECORD).read_text())["bundle"] == "vmat_dose_diffusion"
    assert train_bounded(tmp_path / "datalist.json", out, 15, "cpu,residual", bundle="vmat_dose_diffusion") == ckpt
    with pytest.raises(RuntimeError, match=r"model of the vmat_dose_diffusion bundle, not of vmat_dose_unet.*--fresh"):
        train_bounded(tmp_path / "datalist.json", out, 15, "cpu,residual")
