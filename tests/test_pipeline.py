"""The main job's training stage: a finished training is reused only with the same configuration."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from vmat_monai.engine.bundle import config_files
from vmat_monai.pipeline import TRAINING_RECORD, train_bounded


def _finished(out: Path, digest: str) -> Path:
    ckpt = out / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"weights")
    record = {"summary": "15.0 min wall, 30 epochs", "variant": "cpu", "minutes": 15, "config_sha256": digest}
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
