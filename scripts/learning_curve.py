"""The learning curve of OpenKBP runs: validation MAE against training steps, and the challenge's
dose and DVH scores against the training budget, as a figure and a Markdown table.

Each argument is a model folder of the OpenKBP job (``<workdir>/model-<name>``), optionally as
``series=folder``: runs of one series (one configuration at several budgets) form one line of
scores in the figure, so that two configurations are never joined into one curve (either side may
hold "=": ``vmat_monai.cli.common.labelled_path``). Its validation MAE comes from Lightning's CSV
log (``csv/version_*/metrics.csv``, resumed runs included), its budget from ``training.json`` and
its scores from ``<workdir>/predictions-<name>/scores.json``, which the job writes; with
``--rescore`` a run without that file is scored from its predictions (the job's ``openkbp_scores``
on ``<workdir>/data/datalist.json``; nothing is written there).

    python scripts/learning_curve.py "float32=runs/okbp/model-f9m80s0" "float32=runs/okbp/model-f9m120s0" \\
        "bf16=runs/okbp/model-f9defm20s0" --out docs/figures/openkbp_learning_curve.png --rescore
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from vmat_monai.cli.common import labelled_path

# the targets of the learning curve (issue 20): dose / DVH score (Gy) by budget (minutes)
TARGETS = {20.0: (4.0, 3.0), 120.0: (3.0, 2.0)}


@dataclass
class Run:
    """One training run: its validation curve and, where known, its scores."""

    name: str
    minutes: float
    curve: pd.DataFrame  # columns step, val_mae_body_gy
    steps: int
    dose_score: float | None = None
    dvh_score: float | None = None
    notes: list[str] = field(default_factory=list)
    series: str = ""  # the configuration it belongs to, for the scores' lines


def validation_curve(model_dir: Path) -> tuple[pd.DataFrame, int]:
    """(step, val_mae_body_gy) rows of every CSV log of ``model_dir`` and the last training step + 1."""
    logs = sorted(model_dir.glob("csv/version_*/metrics.csv"))
    if not logs:
        raise FileNotFoundError(f"{model_dir}: no csv/version_*/metrics.csv (is it a model folder of the OpenKBP job?)")
    table = pd.concat([pd.read_csv(p) for p in logs], ignore_index=True)
    if "val_mae_body_gy" not in table:
        raise ValueError(f"{model_dir}: the CSV logs hold no validation (val_mae_body_gy); train past one validation")
    curve = table.dropna(subset=["val_mae_body_gy"])[["step", "val_mae_body_gy"]]
    return curve.sort_values("step").reset_index(drop=True), int(table["step"].max()) + 1


def load_run(model_dir: Path, rescore: bool = False, series: str = "") -> Run:
    """A run from its model folder (see the module docstring), in ``series``."""
    record = json.loads((model_dir / "training.json").read_text())
    curve, steps = validation_curve(model_dir)
    name = model_dir.name.removeprefix("model").removeprefix("-") or "default"
    run = Run(name, float(record["minutes"]), curve, steps, series=series)
    pred_dir = model_dir.parent / model_dir.name.replace("model", "predictions", 1)
    scores = pred_dir / "scores.json"
    if scores.is_file():
        s = json.loads(scores.read_text())
        run.dose_score, run.dvh_score = float(s["dose_score_gy"]), float(s["dvh_score_gy"])
    elif rescore and pred_dir.is_dir():
        from vmat_monai.data.datasets import load_datalist
        from vmat_monai.workflows.openkbp import openkbp_scores

        items = load_datalist(model_dir.parent / "data" / "datalist.json", "test")
        scored = openkbp_scores(pred_dir, items)
        run.dose_score, run.dvh_score = scored.dose_score, scored.dvh_score
        run.notes.append(f"scored from {pred_dir.name}")
    else:
        run.notes.append(f"no {scores} (pass --rescore to score {pred_dir.name})")
    return run


def markdown_table(runs: list[Run]) -> str:
    """One row per run: series, budget, steps, last validation MAE, scores."""
    rows = [
        "| run | series | budget (min) | steps | last validation MAE (Gy) at step | dose score (Gy) | DVH score (Gy) |"
    ]
    rows.append("|---|---|---|---|---|---|---|")
    fmt = lambda v: "–" if v is None else f"{v:.2f}"  # noqa: E731
    for r in runs:
        last = r.curve.iloc[-1]
        rows.append(
            f"| {r.name} | {r.series or '–'} | {r.minutes:g} | {r.steps} "
            f"| {last.val_mae_body_gy:.2f} at {int(last.step) + 1} | {fmt(r.dose_score)} | {fmt(r.dvh_score)} |"
        )
    return "\n".join(rows)


def score_lines(runs: list[Run]) -> dict[str, list[Run]]:
    """The scored runs by series (first-seen order), each sorted by budget: one line of scores each."""
    scored = sorted((r for r in runs if r.dose_score is not None), key=lambda r: r.minutes)
    return {s: [r for r in scored if r.series == s] for s in dict.fromkeys(r.series for r in scored)}


def plot(runs: list[Run], out: Path) -> Path:
    """Validation MAE against steps (left) and the scores against the budget with the targets (right)."""
    from matplotlib.figure import Figure

    from vmat_monai.evaluation.figures import save_figure

    fig = Figure(figsize=(10, 4), layout="constrained")
    a, b = fig.subplots(1, 2)
    for r in runs:
        tag = f", {r.series}" if r.series else ""
        a.plot(r.curve.step + 1, r.curve.val_mae_body_gy, "o-", label=f"{r.name} ({r.minutes:g} min{tag})")
    a.set(xscale="log", xlabel="training step", ylabel="validation MAE in the body (Gy)")
    a.set_title("validation patients of the training split")
    a.legend(fontsize=8)
    lines = score_lines(runs)
    for i, (series, line) in enumerate(lines.items()):  # one colour per series: dose solid, DVH dashed
        m, tag = [r.minutes for r in line], f" ({series})" if series else ""
        b.plot(m, [r.dose_score for r in line], "o-", color=f"C{i}", label=f"dose score{tag}")
        b.plot(m, [r.dvh_score for r in line], "s--", color=f"C{i}", label=f"DVH score{tag}")
    for i, (minutes, (dose, dvh)) in enumerate(TARGETS.items()):
        b.plot([minutes], [dose], "v", color="0.4", markersize=9, label="dose target" if i == 0 else None)
        b.plot([minutes], [dvh], "v", color="0.4", mfc="none", markersize=9, label="DVH target" if i == 0 else None)
    scores = [v for line in lines.values() for r in line for v in (r.dose_score, r.dvh_score)]
    top = max(scores + [max(t) for t in TARGETS.values()])
    b.set(xlabel="training budget (min, CPU)", ylabel="score (Gy)", ylim=(0, 1.15 * top))
    b.set_title("challenge scores, validation patients")
    b.legend(fontsize=8)
    return save_figure(fig, out.with_suffix(""), formats=(out.suffix.lstrip(".") or "png",), dpi=110)[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="model folders of the OpenKBP job (model-<name>), or series=folder")
    ap.add_argument("--out", type=Path, default=Path("openkbp_learning_curve.png"), help="figure (PNG)")
    ap.add_argument("--rescore", action="store_true", help="score runs without scores.json from their predictions")
    args = ap.parse_args()
    runs, failed = [], []
    for item in args.models:
        series, d = labelled_path(item)
        try:
            runs.append(load_run(d, args.rescore, series))
        except (OSError, ValueError, KeyError) as e:
            failed.append(f"{d}: {e}")
    for line in failed:
        print(f"skipped {line}", file=sys.stderr)
    if not runs:
        return 1
    runs.sort(key=lambda r: r.minutes)
    print(markdown_table(runs))
    for r in runs:
        for note in r.notes:
            print(f"{r.name}: {note}")
    print(f"figure: {plot(runs, args.out)}")
    return 0 if not failed else 2


if __name__ == "__main__":
    sys.exit(main())
