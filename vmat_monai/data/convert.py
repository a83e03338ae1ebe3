"""One DICOM-RT study (or research NPZ file, or OpenKBP patient) -> one case folder and its QA row.

The case folder and the datalist are defined in :mod:`vmat_monai.data.case_folder`; a whole tree
of sources is converted by :func:`vmat_monai.data.convert_tree.convert_tree`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vmat_monai.constraints import SOURCE_PLAN, ConstraintVector, goals_to_constraints, layout_for
from vmat_monai.data.case_folder import case_info, target_qa, write_case_folder
from vmat_monai.data.plan_plausibility import plausibility_warnings
from vmat_monai.data.research_npz import npz_case_id, read_research_npz
from vmat_monai.dicom.plan_reading import load_rtplan, read_beams, read_plan
from vmat_monai.dicom.readers import (
    CaseFiles,
    DicomInputError,
    duplicate_roi_names,
    load_rtstruct,
    read_ct,
    read_rtdose_on,
    read_structures,
    referenced_ct_series,
    roi_mask,
)
from vmat_monai.errors import SourceInputError
from vmat_monai.structures import PROSTATE_SIB, NameMatcher, StructureSet, get_structure_set
from vmat_monai.transforms.beam_arrangement import protocol

__all__ = [
    "ConvertOptions",
    "case_id_for",
    "convert_case",
    "convert_npz_case",
    "convert_openkbp_case",
    "qa_row",
    "scrub_identifiers",
]


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
        info["warnings"] = [scrub_identifiers(w, files) for w in warnings]
    write_case_folder(out_dir, info, ct.hu, ct.grid, masks, body, dose)
    return qa_row(info, "converted")


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
    return qa_row(info, "converted")


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
    return qa_row(info, "converted")


def scrub_identifiers(text: str, files: CaseFiles) -> str:
    """Remove identifiers (patient id, source folder) from a message."""
    if files.patient_id:
        text = text.replace(files.patient_id, "<patient>")
    return text.replace(str(files.folder), "<case folder>")


def qa_row(info: dict[str, Any], status: str) -> dict[str, Any]:
    """The QA report row of a converted (or skipped) case from its ``case.json`` record."""
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
