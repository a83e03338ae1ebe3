"""A tree of DICOM-RT folders (or research NPZ files, or OpenKBP patients) -> case folders,
datalist.json and a QA report (``qa_report.csv|json``: one row per case with status, warnings,
errors and target dose metrics); one case is converted by :mod:`vmat_monai.data.convert`.

``sources.csv`` links each case id to its source (folder or file relative to the input folder,
StudyInstanceUID): it holds identifiers and is the only output that does; nothing else refers to
it, and ``write_sources=False`` removes it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vmat_monai.atomic import write_csv_atomic, write_text_atomic
from vmat_monai.data.case_folder import CASE_JSON, make_datalist
from vmat_monai.data.convert import (
    ConvertOptions,
    case_id_for,
    convert_case,
    convert_npz_case,
    convert_openkbp_case,
    qa_row,
    scrub_identifiers,
)
from vmat_monai.data.research_npz import npz_case_id
from vmat_monai.dicom.readers import CaseFiles, discover
from vmat_monai.errors import SourceInputError
from vmat_monai.file_walk import walk_files
from vmat_monai.parallel import map_unordered
from vmat_monai.transforms.beam_arrangement import protocol

__all__ = ["SOURCES_CSV", "convert_tree"]

SOURCES_CSV = "sources.csv"


def _convert_worker(args: tuple[str, CaseFiles | Path, str, ConvertOptions]) -> dict[str, Any]:
    cid, source, out, opts = args
    try:
        if isinstance(source, Path) and opts.source_format == "openkbp":
            return convert_openkbp_case(source, Path(out), opts)
        if isinstance(source, Path):
            return convert_npz_case(source, Path(out), opts)
        return convert_case(source, Path(out), opts)
    except SourceInputError as exc:
        msg = str(exc)
    except Exception as exc:  # unexpected: still a per-case failure, never the whole batch
        msg = f"{type(exc).__name__}: {exc}"
    if not opts.keep_phi:
        if isinstance(source, CaseFiles):
            msg = scrub_identifiers(msg, source)
        elif opts.source_format == "npz":
            msg = msg.replace(str(source), "<npz file>")
    return {"case_id": cid, "status": "failed", "errors": msg}


def _sources(input_dir: str | Path, opts: ConvertOptions) -> tuple[list[tuple[str, CaseFiles | Path]], list[str]]:
    """(case id, source) pairs found under ``input_dir`` and unreadable-file problems."""
    if opts.source_format == "npz":
        root = Path(input_dir)
        if not root.is_dir():
            raise SourceInputError(f"input folder {root} does not exist or is not a folder")
        found = walk_files(root, keep=lambda f: f.suffix == ".npz")
        if not found:
            raise SourceInputError(
                f"no .npz case found under {root}: looked in every folder below it, symbolic links followed; "
                "point --input at the folder of the research code's NPZ files"
            )
        return [(npz_case_id(p, opts.keep_phi), p) for p in found], []
    if opts.source_format == "openkbp":
        from vmat_monai.data.openkbp import find_patients

        return [(p.name, p) for p in find_patients(input_dir)], []
    if opts.source_format != "dicom":
        raise ValueError(f"unknown --format {opts.source_format!r}: use dicom, npz or openkbp")
    cases, problems = discover(input_dir)
    return [(case_id_for(c, opts.keep_phi), c) for c in cases], problems


def _source_row(cid: str, source: CaseFiles | Path, root: Path) -> dict[str, str]:
    """The ``sources.csv`` row of a case: its folder (DICOM, OpenKBP) or file (NPZ) relative to ``root``."""
    where = source.folder if isinstance(source, CaseFiles) else source
    try:
        rel = str(Path(where).relative_to(root))
    except ValueError:
        rel = str(where)
    uid = source.study_uid if isinstance(source, CaseFiles) else ""
    return {"case_id": cid, "source": rel, "study_instance_uid": uid}


def _write_sources(out: Path, rows: list[dict[str, str]], statuses: dict[str, str], keep: bool) -> Path | None:
    """Write ``sources.csv`` (rows of earlier runs for cases not seen now are kept), or remove it."""
    path = out / SOURCES_CSV
    if not keep:
        path.unlink(missing_ok=True)
        return None
    merged: dict[str, dict[str, str]] = {}
    if path.is_file():
        import csv

        with path.open(newline="") as f:
            merged = {r["case_id"]: r for r in csv.DictReader(f) if r.get("case_id")}
    for r in rows:
        merged[r["case_id"]] = {**r, "status": statuses.get(r["case_id"], "")}
    write_csv_atomic(path, [merged[k] for k in sorted(merged)])
    return path


def convert_tree(
    input_dir: str | Path,
    output_dir: str | Path,
    opts: ConvertOptions | None = None,
    workers: int = 1,
    progress: Callable[[int, int, str], None] | None = None,
) -> dict[str, Any]:
    """Convert every study (DICOM) or NPZ file found under ``input_dir``; returns the QA summary.

    Finished cases are skipped unless ``opts.overwrite``; failed cases are reported and the
    others go on. The QA report (CSV and JSON), datalist.json and ``sources.csv`` are written at
    the end. The returned summary also holds ``sources`` (case id -> source relative to
    ``input_dir``, for the user's screen), which is not written to the QA report.

    Raises:
        SourceInputError: nothing to convert was found under ``input_dir`` (nothing is written).
    """
    opts = opts or ConvertOptions()
    out = Path(output_dir)
    if Path(input_dir).resolve() == out.resolve():
        raise SourceInputError("--output must differ from --input (never write into the user's data)")
    protocol(opts.beam_protocol)  # an unknown protocol fails here, before any case (KeyError naming the known ones)
    cases, problems = _sources(input_dir, opts)  # raises when there is nothing to convert
    out.mkdir(parents=True, exist_ok=True)
    sources = [_source_row(cid, src, Path(input_dir)) for cid, src in cases]
    rows: list[dict[str, Any]] = []
    todo = []
    for cid, source in cases:
        cj = out / cid / CASE_JSON
        if cj.exists() and not opts.overwrite:
            rows.append(qa_row(json.loads(cj.read_text()), "skipped (already converted)"))
        else:
            todo.append((cid, source, str(out), opts))
    done = len(rows)
    if progress:
        progress(done, len(cases), "")
    t0 = time.perf_counter()
    for row in map_unordered(_convert_worker, todo, workers):
        rows.append(row)
        done += 1
        if progress:
            progress(done, len(cases), row["case_id"])
    seconds = time.perf_counter() - t0
    rows.sort(key=lambda r: r["case_id"])
    label = opts.structure_set if isinstance(opts.structure_set, str) else opts.structure_set.name
    datalist = make_datalist(out, opts.seed, opts.split, label)
    failed = [r for r in rows if r["status"] == "failed"]
    summary = {
        "n_studies": len(cases),
        "converted": sum(r["status"] == "converted" for r in rows),
        "skipped": sum(r["status"].startswith("skipped") for r in rows),
        "failed": len(failed),
        "unreadable_files": problems if opts.keep_phi else [f"{len(problems)} unreadable file(s)"] * bool(problems),
        "seconds": round(seconds, 2),
        "split": {k: len(datalist[k]) for k in ("training", "validation", "test", "inference")},
        "cases": rows,
    }
    write_text_atomic(out / "qa_report.json", json.dumps(summary, indent=2))
    write_csv_atomic(out / "qa_report.csv", rows)
    statuses = {r["case_id"]: r["status"] for r in rows}
    summary["sources_file"] = _write_sources(out, sources, statuses, opts.write_sources)
    summary["sources"] = {r["case_id"]: r["source"] for r in sources}
    return summary
