"""scripts/learning_curve.py: validation curves from Lightning's CSV logs, scores from the job's
scores.json, the table and the figure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.scripts import load_script


def _model(work: Path, name: str, minutes: float, logs: list[list[tuple[int, float | None]]], scores=None) -> Path:
    """A model folder with one CSV log per (resumed) session: rows of (step, val MAE or None)."""
    model = work / f"model-{name}"
    for v, rows in enumerate(logs):
        log = model / "csv" / f"version_{v}"
        log.mkdir(parents=True)
        lines = ["epoch,step,train_loss,val_mae_body_gy"]
        lines += [f"0,{s},0.5,{'' if m is None else m}" for s, m in rows]
        (log / "metrics.csv").write_text("\n".join(lines) + "\n")
    (model / "training.json").write_text(json.dumps({"minutes": minutes, "summary": "x"}))
    if scores is not None:
        (work / f"predictions-{name}").mkdir()
        (work / f"predictions-{name}" / "scores.json").write_text(
            json.dumps({"dose_score_gy": scores[0], "dvh_score_gy": scores[1]})
        )
    return model


def test_curves_scores_table_and_figure(tmp_path, capsys, monkeypatch):
    mod = load_script("learning_curve")
    short = _model(tmp_path, "a20", 20, [[(0, None), (749, 6.5), (900, None)]], scores=(5.3, 4.2))
    # a resumed run: two CSV logs, the second continuing the steps
    long = _model(tmp_path, "a80", 80, [[(749, 6.2), (1000, None)], [(1499, 5.4), (2664, None)]])
    run = mod.load_run(long)
    assert run.curve.step.tolist() == [749, 1499] and run.curve.val_mae_body_gy.tolist() == [6.2, 5.4]
    assert run.steps == 2665 and run.dose_score is None and "--rescore" in run.notes[0]
    table = mod.markdown_table([mod.load_run(short), run])
    assert "| a20 | – | 20 | 901 | 6.50 at 750 | 5.30 | 4.20 |" in table
    assert "| a80 | – | 80 | 2665 | 5.40 at 1500 | – | – |" in table
    monkeypatch.setattr("sys.argv", ["learning_curve.py", str(long), str(short), "--out", str(tmp_path / "c.png")])
    assert mod.main() == 0
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    out = capsys.readouterr().out
    assert out.index("| a20 |") < out.index("| a80 |")  # sorted by budget


def test_series_are_separate_lines_of_scores(tmp_path, capsys, monkeypatch):
    """series=folder arguments: a configuration's runs form one line, sorted by budget; two
    configurations are never joined; the table names each run's series."""
    mod = load_script("learning_curve")
    a20 = _model(tmp_path, "a20", 20, [[(749, 6.5)]], scores=(5.3, 4.2))
    a120 = _model(tmp_path, "a120", 120, [[(749, 6.4)]], scores=(4.3, 3.1))
    b20 = _model(tmp_path, "b20", 20, [[(749, 6.0)]], scores=(5.0, 4.0))
    b5 = _model(tmp_path, "b5", 5, [[(99, 8.0)]])  # not scored: no point on the scores' lines
    argv = [f"fp32={a120}", f"bf16={b20}", f"fp32={a20}", f"bf16={b5}", "--out", str(tmp_path / "c.png")]
    monkeypatch.setattr("sys.argv", ["learning_curve.py", *argv])
    assert mod.main() == 0
    out = capsys.readouterr().out
    assert "| a120 | fp32 | 120 |" in out and "| b20 | bf16 | 20 |" in out
    runs = [mod.load_run(a120, series="fp32"), mod.load_run(b20, series="bf16"), mod.load_run(a20, series="fp32")]
    lines = mod.score_lines([*runs, mod.load_run(b5, series="bf16")])
    assert {s: [r.name for r in line] for s, line in lines.items()} == {"fp32": ["a20", "a120"], "bf16": ["b20"]}


def test_a_folder_without_logs_is_named_and_the_others_go_on(tmp_path, capsys, monkeypatch):
    mod = load_script("learning_curve")
    good = _model(tmp_path, "a20", 20, [[(749, 6.5)]], scores=(5.3, 4.2))
    (tmp_path / "model-empty").mkdir()
    (tmp_path / "model-empty" / "training.json").write_text(json.dumps({"minutes": 5}))
    with pytest.raises(FileNotFoundError, match="model-empty: no csv"):
        mod.load_run(tmp_path / "model-empty")
    monkeypatch.setattr("sys.argv", ["x", str(tmp_path / "model-empty"), str(good), "--out", str(tmp_path / "c.png")])
    assert mod.main() == 2
    assert "skipped" in capsys.readouterr().err and (tmp_path / "c.png").is_file()
