"""Text the workflows and the CLI print: progress plumbing, the cohort table, the evaluation table."""

from __future__ import annotations

import csv
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

__all__ = [
    "Progress",
    "ProgressFactory",
    "Report",
    "cohort_lines",
    "conversion_lines",
    "evaluation_lines",
    "no_progress",
    "stderr",
    "tqdm_progress",
]

Report = Callable[[str], None]
Progress = Callable[[int, int, str], None]
ProgressFactory = Callable[[str], AbstractContextManager[Progress]]


def stderr(line: str) -> None:
    """Print one line to standard error."""
    print(line, file=sys.stderr, flush=True)


@contextmanager
def no_progress(desc: str) -> Iterator[Progress]:
    """A progress callback that shows nothing."""
    yield lambda done, total, case: None


@contextmanager
def tqdm_progress(desc: str) -> Iterator[Progress]:
    """A tqdm bar driven by the library's ``progress(done, total, case)`` callbacks; plain lines
    (:class:`vmat_monai.progress_lines.ProgressLines`) when stderr is not a terminal."""
    from tqdm.auto import tqdm

    from vmat_monai.progress_lines import ProgressLines, is_terminal

    bar = None
    lines: ProgressLines | None = None

    def update(done: int, total: int, case: str) -> None:
        nonlocal bar, lines
        if not is_terminal():
            lines = lines or ProgressLines(desc, total)
            lines.update(done, case)
            return
        if bar is None:
            bar = tqdm(total=total, desc=desc, unit="case", dynamic_ncols=True, file=sys.stderr)
        bar.n = done
        bar.set_postfix_str(case)
        bar.refresh()

    try:
        yield update
    finally:
        if bar is not None:
            bar.close()


def cohort_lines(manifest: Mapping[str, Any]) -> list[str]:
    """The synthetic cohort's table: each plan's PTV70 D95/Dmax, PTV56 D95, rectum V70 and its goal."""
    rows = manifest["cases"]
    if not rows:
        return []
    lines = [
        f"{'case':<9}{'PTV70 D95':>10}{'PTV70 Dmax':>11}{'PTV56 D95':>10}{'Rect V70':>9}{'Rect V70 goal':>14}{'s':>6}"
    ]
    for r in rows:
        a, g = r["achieved"], r["goals_in_plan"]
        lines.append(
            f"{r['case_id']:<9}{a.get('PTV70_D95', float('nan')):>10.2f}{a.get('PTV70_Dmax', float('nan')):>11.2f}"
            f"{a.get('PTV56_D95', float('nan')):>10.2f}{a.get('Rectum_V70', float('nan')):>9.3f}"
            f"{g.get('rectum_V70', float('nan')):>14.3f}{r['seconds']:>6.1f}"
        )
    return lines


def evaluation_lines(summary: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """Per-case table and mean ± sd of the headline metrics (lines), and the cases not evaluated."""
    path = Path(summary["output_dir"]) / "metrics.csv"
    rows: list[dict[str, str]] = []
    if path.is_file():
        with path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
    cols = [
        ("MAE_body", "MAE Gy", "{:>8.2f}"),
        ("gamma_pass_rate", "gamma %", "{:>8.1f}"),
        ("PTV70_D95_err", "D95err Gy", "{:>10.2f}"),
        ("goals_pass_rate_pred", "goals %", "{:>8.0f}"),
        ("goals_agreement", "agree %", "{:>8.0f}"),
    ]
    cols = [c for c in cols if rows and c[0] in rows[0]]
    lines = [f"{'case':<22}" + "".join(f"{h:>{10 if 'D95' in h else 8}}" for _, h, _ in cols)]
    for r in rows:
        lines.append(f"{r['case_id']:<22}" + "".join(f.format(float(r[k])) if r[k] else " " * 8 for k, _, f in cols))
    m = summary["metrics"]
    lines.append(
        f"{'mean ± sd':<22}"
        + "  ".join(f"{h} {m[k]['mean']:.2f} ± {m[k]['sd']:.2f}" for k, h, _ in cols if m.get(k, {}).get("n"))
    )
    cal = summary.get("calibration")
    if cal:
        lines.append(
            f"uncertainty (dose_std, {cal['cases']} cases): error within 1 sd in {cal['within_1sd_pct']:.1f} % of "
            f"body voxels, within 2 sd in {cal['within_2sd_pct']:.1f} % (calibrated: 68.3 / 95.4 %); mean sd "
            f"{cal['mean_sd_gy']:.2f} Gy; rank correlation of a case's sd with its MAE "
            f"{cal['sd_vs_error_spearman']:.2f}"
        )
    errors = [f"NOT EVALUATED {cid}: {err}" for cid, err in {**summary["missing"], **summary["failed"]}.items()]
    return lines, errors


def conversion_lines(summary: Mapping[str, Any], data_dir: Path) -> list[str]:
    """The conversion, export by export (named by its folder relative to ``--input``: on the user's
    screen only), then the counts and where the outputs are."""
    sources = summary.get("sources", {})
    lines = []
    for row in summary["cases"]:
        cid = row["case_id"]
        src = sources.get(cid)
        if row["status"] == "failed":
            err = str(row["errors"]).replace("<case folder>", src) if src else row["errors"]
            lines.append(f"FAILED     {src} ({cid}): {err}" if src else f"FAILED     {cid}: {err}")
        else:
            tag = "converted" if row["status"] == "converted" else "skipped"
            note = " (already converted)" if tag == "skipped" else ""
            lines.append(f"{tag:<10} {src} -> {cid}{note}" if src else f"{tag:<10} {cid}{note}")
    lines.append(
        f"studies: {summary['n_studies']}  converted: {summary['converted']}  skipped: {summary['skipped']}  "
        f"failed: {summary['failed']}  split: {summary['split']}"
    )
    out = Path(data_dir).resolve()
    lines += [f"datalist: {out / 'datalist.json'}", f"QA report: {out / 'qa_report.csv'}"]
    if summary.get("sources_file"):
        lines.append(
            f"sources: {Path(summary['sources_file']).resolve()} (case id -> your folder and StudyInstanceUID: "
            "identifiers, keep it private; --no-sources removes it)"
        )
    return lines
