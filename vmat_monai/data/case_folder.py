"""The case folder and the datalist: the one place that writes and reads them.

Case folder (one per plan, written atomically; every source — DICOM-RT, research NPZ, OpenKBP,
the synthetic cohort through DICOM — produces the same)::

    <case_id>/ct.nii.gz      CT in HU (int16), CT grid, RAS affine
    <case_id>/dose.nii.gz    dose in Gy (float32) on the CT grid (absent without a plan dose)
    <case_id>/masks.nii.gz   binary masks (uint8), 4D: x, y, z, channel (structure-set order)
    <case_id>/body.nii.gz    external contour (uint8); OpenKBP: the possible-dose mask
    <case_id>/case.json      see :func:`case_info`

``datalist.json`` (MONAI decathlon style, paths relative to its folder): ``training``,
``validation``, ``test`` (split over patients, seeded) and ``inference`` (cases without dose).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vmat_monai.atomic import atomic_dir, atomic_file, write_text_atomic
from vmat_monai.constraints import ConstraintVector
from vmat_monai.geometry import Grid
from vmat_monai.metrics.dvh import dvh_statistics, volume_at_dose
from vmat_monai.structures import StructureSet

__all__ = [
    "CASE_JSON",
    "SCHEMA_VERSION",
    "case_info",
    "case_item",
    "datalist_entry",
    "make_datalist",
    "read_case_info",
    "save_nifti",
    "target_qa",
    "write_case_folder",
]

CASE_JSON = "case.json"
SCHEMA_VERSION = 1
CT, DOSE, MASKS, BODY = "ct.nii.gz", "dose.nii.gz", "masks.nii.gz", "body.nii.gz"
DEFAULT_SPLIT = (0.8, 0.1, 0.1)


def case_info(
    case_id: str,
    source_format: str,
    structures: StructureSet,
    *,
    prescription_gy: Mapping[str, float],
    primary_prescription_gy: float,
    fractions: int,
    constraints: ConstraintVector,
    structures_found: Mapping[str, str],
    grid: Grid,
    has_dose: bool,
    dose: Mapping[str, Any],
    qa: Mapping[str, float],
    warnings: Sequence[str],
    source_hash: str,
    unmatched_names: Sequence[str] = (),
    helper_names: Sequence[str] = (),
    **extra: Any,
) -> dict[str, Any]:
    """The ``case.json`` of one case: prescription (Gy per target), fractions, the constraint vector
    with its sources, structures found (canonical -> original name) and missing, the CT grid
    (``spacing_mm`` x, y, z; ``shape_zyx``), dose provenance, target QA and warnings. ``extra``
    keys (``patient_hash``, ``split_hint``, ``beams``: the beam arrangement as
    ``BeamArrangement.to_dict``, identifiers with ``--keep-phi``) are appended."""
    return {
        "schema_version": SCHEMA_VERSION,
        "case_id": case_id,
        "source_format": source_format,
        "structure_set": structures.name,
        "channels": list(structures.channels),
        "prescription_gy": dict(prescription_gy),
        "primary_prescription_gy": float(primary_prescription_gy),
        "fractions": fractions,
        "constraints": constraints.to_dict(),
        "structures_found": dict(structures_found),
        "structures_missing": [c for c in structures.channels if c not in structures_found],
        "unmatched_names": list(unmatched_names),
        "helper_names": list(helper_names),
        "spacing_mm": list(grid.spacing),
        "shape_zyx": list(grid.shape),
        "has_dose": has_dose,
        "dose": dict(dose),
        "qa": dict(qa),
        "warnings": list(warnings),
        "source_hash": source_hash,
        **extra,
    }


def save_nifti(array_zyx: np.ndarray, grid: Grid, path: Path, dtype: type = np.float32) -> None:
    """Write an array indexed [z, y, x] (or [c, z, y, x]) as NIfTI (x, y, z[, c]) with the RAS affine."""
    import nibabel as nib

    arr = np.asarray(array_zyx)
    data = arr.transpose(2, 1, 0) if arr.ndim == 3 else arr.transpose(3, 2, 1, 0)
    img = nib.Nifti1Image(np.ascontiguousarray(data.astype(dtype)), grid.affine_ras())
    img.header.set_xyzt_units("mm")
    with atomic_file(path) as tmp:
        nib.save(img, str(tmp))


def write_case_folder(
    out_dir: Path,
    info: dict[str, Any],
    ct_hu: np.ndarray,
    grid: Grid,
    masks: np.ndarray,
    body: np.ndarray,
    dose: np.ndarray | None,
) -> Path:
    """Write one case folder atomically: NIfTI volumes (arrays [z, y, x] on ``grid``) and case.json."""
    with atomic_dir(out_dir / info["case_id"]) as tmp:
        save_nifti(np.clip(np.rint(ct_hu), -32768, 32767), grid, tmp / CT, np.int16)
        save_nifti(masks, grid, tmp / MASKS, np.uint8)
        save_nifti(body, grid, tmp / BODY, np.uint8)
        if dose is not None:
            save_nifti(dose, grid, tmp / DOSE, np.float32)
        (tmp / CASE_JSON).write_text(json.dumps(info, indent=2))
    return out_dir / info["case_id"]


def read_case_info(case_dir: str | Path) -> dict[str, Any]:
    """The ``case.json`` of a case folder."""
    path = Path(case_dir) / CASE_JSON
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} not found: {case_dir} is not a converted case folder") from None


def datalist_entry(info: Mapping[str, Any], case_dir: str | Path | None = None) -> dict[str, Any]:
    """The datalist entry of a case: paths relative to the datalist folder (``<case_id>/ct.nii.gz``),
    or absolute under ``case_dir`` when given (an item for the predictor)."""
    cid = str(info["case_id"])
    root = Path(case_dir).resolve() if case_dir is not None else None

    def path(name: str) -> str:
        return str(root / name) if root is not None else f"{cid}/{name}"

    entry = {
        "case_id": cid,
        "image": path(CT),
        "masks": path(MASKS),
        "body": path(BODY),
        "constraints": info["constraints"]["vector"],
        "prescription_gy": info["primary_prescription_gy"],
    }
    if info["has_dose"] and (root is None or (root / DOSE).is_file()):
        entry["dose"] = path(DOSE)
    if info.get("beams"):  # the beam arrangement for the dose prior (absent in case folders before 0.7)
        entry["beams"] = info["beams"]
    return entry


def case_item(case_dir: str | Path) -> dict[str, Any]:
    """A case folder as a datalist item with absolute paths."""
    return datalist_entry(read_case_info(case_dir), case_dir)


def make_datalist(
    out_dir: Path,
    seed: int = 0,
    split: Sequence[float] = DEFAULT_SPLIT,
    structure_set: str = "",
) -> dict[str, Any]:
    """Build ``out_dir/datalist.json`` from every finished case folder there.

    The split is drawn over patients (all plans of one patient in one split) from ``seed``;
    cases whose source fixes the test set (``split_hint: test``, OpenKBP validation patients) go
    to ``test`` and the rest splits training : validation in the ratio of ``split``.
    """
    cases = [
        json.loads((p / CASE_JSON).read_text())
        for p in sorted(out_dir.iterdir())
        if p.is_dir() and not p.name.startswith(".") and (p / CASE_JSON).exists()
    ]
    fixed_test = sorted(c["case_id"] for c in cases if c["has_dose"] and c.get("split_hint") == "test")
    groups: dict[str, list[str]] = {}
    for c in sorted(cases, key=lambda c: c["case_id"]):
        if c["has_dose"] and c["case_id"] not in fixed_test:
            groups.setdefault(c.get("patient_hash", c["case_id"]), []).append(c["case_id"])
    keys = sorted(groups)
    rng = np.random.default_rng(seed)
    order = [keys[i] for i in rng.permutation(len(keys))]
    n = len(order)
    if fixed_test:
        n_val = max(round(n * split[1] / (split[0] + split[1])), 1 if n >= 2 else 0)
        n_test = 0
    else:
        n_val, n_test = round(n * split[1]), round(n * split[2])
        if n >= 3:
            n_val, n_test = max(n_val, 1), max(n_test, 1)
    n_train = n - n_val - n_test

    def cases_of(part: list[str]) -> list[str]:
        return sorted(cid for k in part for cid in groups[k])

    parts = {
        "training": cases_of(order[:n_train]),
        "validation": cases_of(order[n_train : n_train + n_val]),
        "test": sorted(cases_of(order[n_train + n_val :]) + fixed_test),
    }
    by_id = {c["case_id"]: c for c in cases}
    datalist = {
        "name": "vmat-monai",
        "description": "DICOM-RT converted by vmat-monai convert",
        "structure_set": structure_set or (cases[0]["structure_set"] if cases else ""),
        "channels": cases[0]["channels"] if cases else [],
        "seed": seed,
        **{k: [datalist_entry(by_id[c]) for c in v] for k, v in parts.items()},
        "inference": [datalist_entry(c) for c in cases if not c["has_dose"]],
    }
    write_text_atomic(out_dir / "datalist.json", json.dumps(datalist, indent=2))
    return datalist


def target_qa(
    dose: np.ndarray,
    masks: np.ndarray,
    structures: StructureSet,
    found: Mapping[str, str],
    prescription: Mapping[str, float],
    warnings: list[str],
) -> dict[str, float]:
    """D95/D50/Dmean (Gy) and V95pct (fraction at >= 95 % of its level) of every target present
    (``metrics.dvh`` definitions); appends a warning when the primary D95 is off by > 5 %."""
    qa: dict[str, float] = {}
    for t, rx in structures.targets.items():
        m = masks[structures.index(t)]
        if t not in found or not m.any():
            continue
        stats = dvh_statistics(dose, m, 1.0, ("D95", "D50", "Dmean"))
        stats["V95pct"] = volume_at_dose(dose, m, 0.95 * rx, 1.0)[0] / 100.0
        qa.update({f"{t}_{k}": round(float(v), 4) for k, v in stats.items()})
    primary = structures.primary_target
    pd95 = qa.get(f"{primary}_D95")
    if pd95 is not None and abs(pd95 - prescription[primary]) > 0.05 * prescription[primary]:
        warnings.append(f"{primary} D95 {pd95:.2f} Gy differs from the prescription by more than 5 %")
    return qa
