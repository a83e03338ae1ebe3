"""Bad arguments give a one-line error and a non-zero exit."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmat_monai.cli import main


def _err_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    return [line for line in err if line.startswith("error:")]


def test_synth_rejects_zero_cases(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path / "c"), "--cases", "0"]) == 2
    (line,) = _err_line(capsys)
    assert "--cases" in line


def test_synth_refuses_non_empty_folder(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("user data")
    assert main(["synth", "--out", str(tmp_path), "--cases", "1"]) == 2
    (line,) = _err_line(capsys)
    assert "--overwrite" in line
    assert (tmp_path / "keep.txt").read_text() == "user data"


def test_synth_reports_unwritable_folder(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["synth", "--out", str(blocker / "sub"), "--cases", "1"]) == 2
    (line,) = _err_line(capsys)
    assert "cannot write" in line


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "synth" in out and "demo" in out and "main" in out


def test_sampling_options_are_refused_for_a_unet_checkpoint(tmp_path, capsys):
    """--samples and the other DDIM options belong to diffusion models: a U-Net checkpoint says so."""
    import torch

    ckpt = tmp_path / "model.pt"
    torch.save({"head.conv.weight": torch.zeros(1)}, ckpt)  # a regression network's state dict
    argv = ["predict", "--ckpt", str(ckpt), "--source", str(tmp_path), "--out", str(tmp_path / "p"), "--config", "cpu"]
    assert main([*argv, "--samples", "4", "--eta", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "--samples, --eta only apply to a diffusion model (vmat_dose_diffusion)" in err


def test_predict_warns_when_the_configs_changed_since_training(tmp_path, monkeypatch, capsys):
    """A model whose training record hashes other config contents than today's is named before it
    predicts (the OpenKBP prior changed in 0.8.5 without changing the input shape); one trained with
    today's configs is not."""
    import hashlib
    import json
    from pathlib import Path

    import vmat_monai.engine.bundle as bundle_module
    from vmat_monai.engine.bounded_training import TRAINING_RECORD
    from vmat_monai.engine.bundle import config_files

    def stop(*args: object, **kwargs: object) -> None:
        raise ValueError("stopped before loading the model")

    monkeypatch.setattr(bundle_module, "predictor_from_bundle", stop)
    today = b"".join(Path(f).read_bytes() for f in config_files("train", "cpu,openkbp"))
    for name, digest in (("old", "0" * 64), ("new", hashlib.sha256(today).hexdigest())):
        ckpt = tmp_path / name / "checkpoints" / "last.ckpt"
        ckpt.parent.mkdir(parents=True)
        ckpt.write_bytes(b"weights")
        record = {"configs": "cpu,openkbp", "config_sha256": digest, "bundle": "vmat_dose_unet", "summary": "20 min"}
        (tmp_path / name / TRAINING_RECORD).write_text(json.dumps(record))
        argv = ["predict", "--ckpt", str(ckpt), "--source", str(tmp_path), "--out", str(tmp_path / "p")]
        assert main([*argv, "--bundle", "vmat_dose_unet"]) == 2
        err = capsys.readouterr().err
        assert "stopped before loading the model" in err
        warned = f"{ckpt} was not trained with the 'cpu,openkbp' configs as they read now" in err
        assert warned == (name == "old")
        assert ("scripts/levers/openkbp_arc.json" in err) == (name == "old")


def test_labelled_path_splits_where_the_folder_exists(tmp_path, monkeypatch):
    from vmat_monai.cli.common import labelled_path

    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "a=b").mkdir(parents=True)
    (tmp_path / "runs" / "plain").mkdir()
    assert labelled_path("runs/a=b") == ("", Path("runs/a=b"))  # an existing folder whose name holds "="
    assert labelled_path("bf16=runs/a=b") == ("bf16", Path("runs/a=b"))  # the folder's "=" stays in the folder
    assert labelled_path("lr=1e-3=runs/plain") == ("lr=1e-3", Path("runs/plain"))  # the label's "=" in the label
    assert labelled_path("runs/plain") == ("", Path("runs/plain"))
    assert labelled_path("x=runs/missing") == ("x", Path("runs/missing"))  # none exists: the first "=", for the error
    assert labelled_path("runs/missing") == ("", Path("runs/missing"))


def test_per_labelled_folder_measures_each_and_skips_the_bad_ones(tmp_path, monkeypatch, capsys):
    from vmat_monai.cli.common import per_labelled_folder

    monkeypatch.chdir(tmp_path)
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "n.txt").write_text(str(len(name) * 3))
    results, failed = per_labelled_folder(
        ["first=a", "b", "gone=missing"], lambda folder: int((folder / "n.txt").read_text())
    )
    assert results == {"first": 3, "b": 3}  # a plain folder is labelled by its path
    assert len(failed) == 1 and failed[0].startswith("gone=missing: ")
    assert "skipped gone=missing" in capsys.readouterr().err
