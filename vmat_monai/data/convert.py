"""DICOM-RT folders (or research NPZ files, or OpenKBP patients) -> case folders, datalist.json and a
QA report (``qa_report.csv|json``: one row per case with status, warnings, errors and target dose
metrics). The case folder and the datalist are defined in :mod:`vmat_monai.data.case_folder`.

``sources.csv`` links each case id to its source (folder or file relative to the input folder,
StudyInstanceUID): it holds identifiers and is the only output that does; nothing else refers to
it, and ``write_sources=False`` removes it.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vmat_monai.atomic import write_csv_atomic, write_text_atomic
from vmat_monai.constraints import SOURCE_PLAN, ConstraintVector, goals_to_constraints, layout_for
from vmat_monai.data.case_folder import CASE_JSON, case_info, make_datalist, target_qa, write_case_folder
from vmat_monai.data.plan_plausibility import plausibility_warnings
from vmat_monai.data.research_npz import npz_case_id, read_research_npz
from vmat_monai.dicom.plan_reading import load_rtplan, read_beams, read_plan
from vmat_monai.dicom.readers import (
    CaseFiles,
    DicomInputError,
    discover,
    duplicate_roi_names,
    load_rtstruct,
    read_ct,
    read_rtdose_on,
    read_structures,
    referenced_ct_series,
    roi_mask,
)
from vmat_monai.errors import SourceInputError
from vmat_monai.file_walk import walk_files
from vmat_monai.parallel import map_unordered
from vmat_monai.structures import PROSTATE_SIB, NameMatcher, StructureSet, get_structure_set
from vmat_monai.transforms.beam_arrangement import protocol

__all__ = ["SOURCES_CSV", "ConvertOptions", "convert_case", "convert_tree"]

SOURCES_CSV = "sources.csv"


@dataclass(frozen=True)
class ConvertOptions:
    """Options of ``vmat-monai convert``.

    Args:
        structure_set: name or JSON path of the structure set (or the set itself).
        mapping: path of the structure-name mapping (default: repository oar_mapping.json).
        allow_missing_dose: convert cases without RTDOSE (inference-only cases).
        keep_phi: keep PatientID as the case id and in case.json (default: hashed id only).
        overwrite: re-convert finished cases.
        seed: seed of the train/validation/test split.
        split: fractions (training, validation, test).
        source_format: ``"dicom"`` (DICOM-RT folders), ``"npz"`` (the research code's NPZ cases) or
            ``"openkbp"`` (the OpenKBP challenge's sparse-CSV patients).
        beam_protocol: beam arrangement recorded for cases whose RTPLAN gives none (no RTPLAN, or
            one the beam prior cannot use; a warning says which), and for NPZ cases; OpenKBP
            patients always get ``openkbp_9field`` (vmat_monai.transforms.beam_arrangement).
        write_sources: write ``sources.csv`` (case id -> source folder, StudyInstanceUID: holds
            identifiers); False removes an existing one.
    """

    structure_set: str | StructureSet = "prostate_sib"
    mapping: str | None = None
    allow_missing_dose: bool = False
    keep_phi: bool = False
    overwrite: bool = False
    seed: int = 0
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    source_format: str = "dicom"
    beam_protocol: str = "arc360"
    write_sources: bool = True


def case_id_for(files: CaseFiles, keep_phi: bool) -> str:
    """Hashed case id (no identifiers) unless ``keep_phi``."""
    if keep_phi and files.patient_id:
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", files.patient_id)[:64] + "_" + files.study_uid[-6:]
    h = hashlib.sha256(f"{files.patient_id}|{files.study_uid}".encode()).hexdigest()[:12]
    return f"case_{h}"


def convert_case(files: CaseFiles, out_dir: Path, opts: ConvertOptions) -> dict[str, Any]:
    """Convert one study. Returns the QA row; raises :class:`DicomInputError` for unusable input."""
    sset: StructureSet = get_structure_set(opts.structure_set)
    matcher = NameMatcher(opts.mapping)
    case_id = case_id_for(files, opts.keep_phi)
    warnings: list[str] = []
    if files.unreadable:
        raise DicomInputError("; ".join(files.unreadable))
    if not files.ct:
        raise DicomInputError(f"no CT series in {files.folder}: export the planning CT with the RT objects")
    if not files.rtstruct:
        raise DicomInputError(f"no RTSTRUCT in {files.folder}: export the structure set")
    if len(files.rtstruct) > 1:
        warnings.append(f"{len(files.rtstruct)} RTSTRUCT files; using {files.rtstruct[0].name}")
    rs_ds = load_rtstruct(files.rtstruct[0])
    ref_series = referenced_ct_series(rs_ds)
    series = ref_series if ref_series in files.ct else max(files.ct, key=lambda s: len(files.ct[s]))
    if len(files.ct) > 1:
        warnings.append(f"{len(files.ct)} CT series; using {series} ({len(files.ct[series])} slices)")
    ct = read_ct(files.ct[series])
    warnings += ct.warnings
    roi_numbers, rt = read_structures(rs_ds, ct)
    names = list(roi_numbers)
    dup = duplicate_roi_names(rs_ds)
    if dup:
        warnings.append(f"duplicate ROI names {dup}; the first of each is used")
    match = matcher.match(names, sset, extra=(sset.body,))
    for canon, cands in match.duplicates.items():
        warnings.append(f"{canon}: several ROIs match {cands}; chose {match.found[canon]!r} (see docs/STRUCTURES.md)")
    if match.unmatched:
        warnings.append(f"unmatched ROI names: {match.unmatched}")
    masks = np.zeros((sset.n_channels, *ct.hu.shape), dtype=bool)
    original: dict[str, str] = {}
    empty: list[str] = []
    for c, canon in enumerate(sset.channels):
        if canon not in match.found:
            continue
        m = roi_mask(rt, match.found[canon], ct)
        if not m.any():
            empty.append(canon)
            continue
        masks[c] = m
        original[canon] = match.found[canon]
    primary = sset.primary_target
    if primary in empty or primary not in original:
        why = "has an empty contour" if primary in empty else "was not found"
        raise DicomInputError(
            f"{files.rtstruct[0]}: the primary target {primary} {why} (ROIs: {names}); "
            "contour it or add its name to the mapping (--mapping)"
        )
    for e in empty:
        warnings.append(f"{e} ({match.found[e]!r}) has an empty contour; treated as missing")
    if sset.body in match.found:
        body = roi_mask(rt, match.found[sset.body], ct)
        original[sset.body] = match.found[sset.body]
    else:
        body = ct.hu > -350
        warnings.append("no external contour found; BODY = CT > -350 HU")

    # plan: prescription, fractions, goals
    roi_canonical = {roi_numbers[v]: k for k, v in original.items()}
    plan_goals: dict[str, float] = {}
    prescription = dict(sset.targets)
    fractions = sset.fractions
    beams = None
    if files.rtplan:
        plan_ds = load_rtplan(files.rtplan[0])
        plan = read_plan(files.rtplan[0], plan_ds)
        try:
            beams = read_beams(files.rtplan[0], plan_ds)
            warnings.extend(f"RTPLAN: {n}" for n in beams.notes)
        except DicomInputError as exc:
            warnings.append(f"beam dose prior: {exc}; using protocol {opts.beam_protocol}")
        for roi, dose_gy in plan.prescriptions.items():
            if roi in roi_canonical and roi_canonical[roi] in prescription:
                prescription[roi_canonical[roi]] = dose_gy
        fractions = plan.fractions or fractions
        goals = [
            {**g, "structure": roi_canonical[g["roi_number"]]} for g in plan.goals if g["roi_number"] in roi_canonical
        ]
        plan_goals = goals_to_constraints(goals, layout_for(sset), sset.mirror_pairs)
    else:
        warnings.append(
            "no RTPLAN: prescription, fractions and goals from the protocol defaults, "
            f"beams from protocol {opts.beam_protocol}"
        )
    beams = beams if beams is not None else protocol(opts.beam_protocol)
    layout = layout_for(sset)
    target_presence = {
        spec.key: float(prescription.get(spec.structure, 0.0)) if spec.structure in original else 0.0
        for spec in layout
        if spec.kind == "target"
    }
    keys = {s.key for s in layout}
    plan_goals = {k: v for k, v in plan_goals.items() if k in keys}
    cv = ConstraintVector.from_goals(plan_goals, SOURCE_PLAN, layout).with_values(target_presence, "structures")

    # dose
    dose = None
    dose_info: dict[str, Any] = {}
    if files.rtdose:
        dose, dose_info = read_rtdose_on(files.rtdose, ct)
        if "warning" in dose_info:
            warnings.append(dose_info["warning"])
        ptv = masks[sset.index(primary)]
        covered = float((dose[ptv] > 0).mean())
        if covered < 0.99:
            raise DicomInputError(
                f"{files.rtdose[0]}: the dose grid covers only {100 * covered:.1f} % of {primary}; "
                "export the dose on a grid that covers the targets"
            )
    elif not opts.allow_missing_dose:
        raise DicomInputError(
            f"no RTDOSE in {files.folder}: export the plan dose, or use --allow-missing-dose for inference-only cases"
        )
    else:
        warnings.append("no RTDOSE: converted for inference only")

    qa = target_qa(dose, masks, sset, original, prescription, warnings) if dose is not None else {}
    plausibility = plausibility_warnings(
        dose, masks, body, sset, original, prescription, ct.grid, dose_info.get("grid_box_mm")
    )
    info = case_info(
        case_id,
        "dicom",
        sset,
        prescription_gy=prescription,
        primary_prescription_gy=prescription[primary],
        fractions=fractions,
        constraints=cv,
        structures_found=original,
        grid=ct.grid,
        has_dose=dose is not None,
        dose=dose_info,
        qa=qa,
        warnings=warnings,
        source_hash=hashlib.sha256(f"{files.patient_id}|{files.study_uid}".encode()).hexdigest()[:16],
        unmatched_names=match.unmatched,
        helper_names=match.helpers,
        patient_hash=hashlib.sha256(files.patient_id.encode()).hexdigest()[:16],
        beams=beams.to_dict(),
        plausibility=plausibility,
    )
    if opts.keep_phi:
        info["patient_id"] = files.patient_id
        info["study_uid"] = files.study_uid
        info["source_folder"] = str(files.folder)
    else:
        info["dose"]["files"] = len(info["dose"].get("files", []))
        info["warnings"] = [_scrub(w, files) for w in warnings]
    write_case_folder(out_dir, info, ct.hu, ct.grid, masks, body, dose)
    return _qa_row(info, "converted")


def convert_npz_case(path: Path, out_dir: Path, opts: ConvertOptions) -> dict[str, Any]:
    """Convert one research NPZ case (see vmat_monai.data.research_npz) to a case folder."""
    sset = get_structure_set(opts.structure_set)
    if sset.channels != PROSTATE_SIB.channels:
        raise SourceInputError(f"{path}: research NPZ cases hold the prostate set; use --structure-set prostate_sib")
    case = read_research_npz(path)
    warnings = [
        *case.warnings,
        "no external contour in NPZ; BODY = CT > -350 HU",
        f"no RTPLAN in NPZ: beams from protocol {opts.beam_protocol}",
    ]
    found = {c: c for i, c in enumerate(sset.channels) if case.masks[i].any()}
    if sset.primary_target not in found:
        raise SourceInputError(f"{path}: the primary target {sset.primary_target} mask is empty")
    prescription = {t: (case.prescription_gy if t == sset.primary_target else d) for t, d in sset.targets.items()}
    qa = target_qa(case.dose_gy, case.masks, sset, found, prescription, warnings)
    body = case.ct_hu > -350
    plausibility = plausibility_warnings(case.dose_gy, case.masks, body, sset, found, prescription, case.grid)
    info = case_info(
        npz_case_id(path, opts.keep_phi),
        "research_npz",
        sset,
        prescription_gy=prescription,
        primary_prescription_gy=case.prescription_gy,
        fractions=sset.fractions,
        constraints=case.constraints,
        structures_found=found,
        grid=case.grid,
        has_dose=True,
        dose={"interpolation": "none (already on the CT grid in the NPZ)"},
        qa=qa,
        warnings=warnings,
        source_hash=hashlib.sha256(path.stem.encode()).hexdigest()[:16],
        **({"source_file": str(path)} if opts.keep_phi else {}),
        beams=protocol(opts.beam_protocol).to_dict(),
        plausibility=plausibility,
    )
    write_case_folder(out_dir, info, case.ct_hu, case.grid, case.masks, body, case.dose_gy)
    return _qa_row(info, "converted")


def convert_openkbp_case(folder: Path, out_dir: Path, opts: ConvertOptions) -> dict[str, Any]:
    """Convert one OpenKBP patient (see vmat_monai.data.openkbp) to a case folder.

    The body mask is the challenge's possible-dose mask, so MAE in the body is its dose score.
    Patients under a ``validation-pats`` or ``test-pats`` folder are marked for the test split.
    """
    from vmat_monai.data.openkbp import openkbp_constraints, read_openkbp_patient

    sset = get_structure_set(opts.structure_set)
    if sset.name != "openkbp_hn":
        raise SourceInputError(f"{folder}: OpenKBP patients hold the head-and-neck set; use --structure-set openkbp_hn")
    pt = read_openkbp_patient(folder, sset)
    if pt.dose_gy is None and not opts.allow_missing_dose:
        raise SourceInputError(f"{folder}: no dose.csv; use --allow-missing-dose for test patients")
    warnings: list[str] = []
    masks = np.zeros((sset.n_channels, *pt.ct_hu.shape), dtype=bool)
    for name, m in pt.masks.items():
        masks[sset.index(name)] = m
    found = {c: c for c in sset.channels if c in pt.masks and pt.masks[c].any()}
    primary = max((t for t in sset.targets if t in found), key=lambda t: sset.targets[t], default=None)
    if primary is None:
        raise SourceInputError(f"{folder}: no target mask (PTV70/PTV63/PTV56) is present")
    prescription = dict(sset.targets)
    cv = openkbp_constraints(pt, sset)
    qa = target_qa(pt.dose_gy, masks, sset, found, prescription, warnings) if pt.dose_gy is not None else {}
    plausibility = plausibility_warnings(pt.dose_gy, masks, pt.possible_dose_mask, sset, found, prescription, pt.grid)
    info = case_info(
        folder.name,
        "openkbp",
        sset,
        prescription_gy=prescription,
        primary_prescription_gy=sset.prescription_gy,
        fractions=sset.fractions,
        constraints=cv,
        structures_found=found,
        grid=pt.grid,
        has_dose=pt.dose_gy is not None,
        dose={"interpolation": "none (OpenKBP dose is on the CT grid)"},
        qa=qa,
        warnings=warnings,
        source_hash=hashlib.sha256(f"{folder.parent.name}/{folder.name}".encode()).hexdigest()[:16],
        body="possible-dose mask of the challenge",
        beams=protocol("openkbp_9field").to_dict(),
        plausibility=plausibility,
        split_hint="test" if folder.parent.name.startswith(("validation", "test")) else "training",
    )
    write_case_folder(out_dir, info, pt.ct_hu, pt.grid, masks, pt.possible_dose_mask, pt.dose_gy)
    return _qa_row(info, "converted")


def _scrub(text: str, files: CaseFiles) -> str:
    """Remove identifiers (patient id, source folder) from a message."""
    if files.patient_id:
        text = text.replace(files.patient_id, "<patient>")
    return text.replace(str(files.folder), "<case folder>")


def _qa_row(info: dict[str, Any], status: str) -> dict[str, Any]:
    return {
        "case_id": info["case_id"],
        "status": status,
        "has_dose": info["has_dose"],
        "structures_missing": ";".join(info["structures_missing"]),
        "warnings": " | ".join(info["warnings"]),
        "errors": "",
        "plausibility": " | ".join(info.get("plausibility", [])),
        "beams": info.get("beams", {}).get("source", ""),
        **info["qa"],
    }


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
            msg = _scrub(msg, source)
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
    opts: ConvertOptions = ConvertOptions(),
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
            rows.append(_qa_row(json.loads(cj.read_text()), "skipped (already converted)"))
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
