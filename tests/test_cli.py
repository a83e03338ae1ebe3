"""Bad arguments give a one-line error and a non-zero exit."""

from __future__ import annotations

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
