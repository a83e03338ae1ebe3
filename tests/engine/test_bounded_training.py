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


def test_a_checkpoint_knows_whether_its_configs_changed_since_training(tmp_path):
    """Known answers: today's contents of the recorded configs are unchanged; another --config, or a
    record of other contents, is a change; no record or no hash says nothing."""
    from vmat_monai.engine.bounded_training import configs_changed_since_training

    digest = hashlib.sha256(b"".join(Path(f).read_bytes() for f in config_files("train", "cpu"))).hexdigest()
    ckpt = _finished(tmp_path / "model", digest, "cpu")
    assert configs_changed_since_training(ckpt, "cpu") is False
    assert configs_changed_since_training(ckpt, "cpu,openkbp") is True
    assert configs_changed_since_training(_finished(tmp_path / "old", "0" * 64, "cpu"), "cpu") is True
    assert configs_changed_since_training(tmp_path / "elsewhere" / "last.ckpt", "cpu") is False
    legacy = _finished(tmp_path / "legacy", digest, "cpu")
    (tmp_path / "legacy" / TRAINING_RECORD).write_text(json.dumps({"configs": "cpu", "summary": "1 min"}))
    assert configs_changed_since_training(legacy, "cpu") is False


def test_the_record_says_which_numeric_format_the_training_ran_in(tmp_path, monkeypatch):
    """precision and channels_last follow the machine by default, so training.json records them as
    resolved: the machine's defaults, a lever's setting, or a command-line override."""
    import vmat_monai.engine.numeric_formats as nf

    seen = []

    def fake_training(cmd, check):  # stands in for `monai.bundle run training`
        out = Path(cmd[cmd.index("--output_dir") + 1])
        (out / "checkpoints").mkdir(parents=True)
        (out / "checkpoints" / "last.ckpt").write_bytes(b"weights")
        seen.append(cmd)

    monkeypatch.setattr("vmat_monai.engine.bounded_training.subprocess.run", fake_training)
    monkeypatch.setattr(nf, "cpu_has_native_bf16", lambda: True)
    train_bounded(tmp_path / "datalist.json", tmp_path / "a", 15, "cpu")
    record = json.loads((tmp_path / "a" / TRAINING_RECORD).read_text())
    expected = nf.default_precision()  # bf16-mixed here, whatever the accelerator
    assert (record["precision"], record["channels_last"]) == (expected, nf.default_channels_last())
    assert expected in record["summary"]
    lever = tmp_path / "fp32.json"
    lever.write_text(json.dumps({"precision": "32-true", "channels_last": False}))
    train_bounded(tmp_path / "datalist.json", tmp_path / "b", 15, f"cpu,{lever}")
    record = json.loads((tmp_path / "b" / TRAINING_RECORD).read_text())
    assert (record["precision"], record["channels_last"]) == ("32-true", False)
    assert "channels_last" not in record["summary"]
    extra = ["--seed", "1", "--precision", "16-mixed", "--channels_last", "True"]
    train_bounded(tmp_path / "datalist.json", tmp_path / "c", 15, "cpu", extra=extra)
    record = json.loads((tmp_path / "c" / TRAINING_RECORD).read_text())
    assert (record["precision"], record["channels_last"]) == ("16-mixed", True)
    assert seen[-1][-len(extra) :] == extra  # the overrides reach the training unchanged
