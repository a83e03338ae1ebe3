"""The OpenKBP challenge's data layout: reading patients, case folders, submission files.

Layout (Babier et al. 2021, repository ``ababier/open-kbp``)::

    <root>/<split>-pats/pt_N/ct.csv            CT, offset HU (HU + 1024), sparse
    <root>/<split>-pats/pt_N/dose.csv          dose in Gy, sparse (training/validation only)
    <root>/<split>-pats/pt_N/possible_dose_mask.csv
    <root>/<split>-pats/pt_N/voxel_dimensions.csv   three floats, mm
    <root>/<split>-pats/pt_N/<Structure>.csv   one per structure present (index only)

Each CSV (plain, ``.csv.gz`` or ``.csv.xz``; one code path, pandas and :func:`open_csv` pick the
decompressor from the suffix) is sparse: a header ``,data`` then ``index,value`` rows, where
``index`` is a flat C-order index into a 128×128×128 array; masks leave the value empty and
missing voxels are 0.

Array axes: inspecting the data (left parotid at higher axis-1 index than the right, brainstem
at lower axis-2 index than the spinal cord, mandible at lower axis-0 index than the cord) gives
axis 0 → posterior, axis 1 → patient's left, axis 2 → inferior, with voxel sizes
(``voxel_dimensions[0]``, ``[1]``, ``[2]``). We place voxel (0, 0, 0) at the origin of an LPS grid
(the data carry no absolute position), so case folders and MONAI's RAS orientation are right and
left–right flips swap the parotids correctly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vmat_monai.constraints import OPENKBP_LAYOUT, RX_GY, SOURCE_DEFAULT, ConstraintVector
from vmat_monai.errors import SourceInputError
from vmat_monai.file_walk import walk_files
from vmat_monai.geometry import Grid
from vmat_monai.structures import OPENKBP_HN, StructureSet

__all__ = [
    "OPENKBP_SHAPE",
    "OpenKBPPatient",
    "find_patients",
    "from_openkbp_axes",
    "open_csv",
    "openkbp_constraints",
    "read_openkbp_patient",
    "read_sparse_csv",
    "to_openkbp_axes",
    "write_sparse_dose",
]

OPENKBP_SHAPE = (128, 128, 128)
HU_OFFSET = 1024.0
NEAR_PTV_MM = 5.0
SOURCE_RULE = "openkbp_rule"


class OpenKBPInputError(SourceInputError):
    """A patient folder that cannot be read (message names the file and what to do)."""


@dataclass
class OpenKBPPatient:
    """One patient on our LPS grid: arrays indexed [z, y, x]."""

    patient: str
    ct_hu: np.ndarray
    dose_gy: np.ndarray | None
    masks: dict[str, np.ndarray]
    possible_dose_mask: np.ndarray
    grid: Grid


CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.xz")


def _csv_path(folder: Path, stem: str) -> Path | None:
    """The patient's ``<stem>.csv`` in whichever of :data:`CSV_SUFFIXES` it was stored."""
    for suffix in CSV_SUFFIXES:
        p = folder / f"{stem}{suffix}"
        if p.is_file():
            return p
    return None


def open_csv(path: Path):
    """Open a plain, gzip or xz CSV as text."""
    import gzip
    import lzma

    opener = {".gz": gzip.open, ".xz": lzma.open}.get(path.suffix, open)
    return opener(path, "rt")


def read_sparse_csv(path: str | Path, shape: tuple[int, int, int] = OPENKBP_SHAPE) -> np.ndarray:
    """Dense array (challenge axes) from a sparse OpenKBP CSV; masks (no values) give 0/1."""
    import pandas as pd

    path = Path(path)
    try:
        with open_csv(path) as fh:
            df = pd.read_csv(fh, index_col=0)
    except Exception as exc:
        raise OpenKBPInputError(f"{path}: unreadable sparse CSV ({exc}); re-download the patient") from None
    if "data" not in df.columns:
        raise OpenKBPInputError(f"{path}: no 'data' column; expected the header ',data'")
    idx = df.index.to_numpy()
    n = int(np.prod(shape))
    if idx.size and (idx.min() < 0 or idx.max() >= n or not np.issubdtype(idx.dtype, np.integer)):
        raise OpenKBPInputError(f"{path}: indices outside a {shape} grid")
    out = np.zeros(n, dtype=np.float32)
    values = df["data"].to_numpy(dtype=np.float64)
    out[idx] = 1.0 if np.all(np.isnan(values)) else values
    if not np.all(np.isfinite(out)):
        raise OpenKBPInputError(f"{path}: NaN/inf values")
    return out.reshape(shape)


def from_openkbp_axes(a: np.ndarray) -> np.ndarray:
    """Challenge axes (posterior, left, inferior) -> our [z, y, x] (superior, posterior, left)."""
    return np.ascontiguousarray(np.asarray(a).transpose(2, 0, 1)[::-1])


def to_openkbp_axes(a_zyx: np.ndarray) -> np.ndarray:
    """Inverse of :func:`from_openkbp_axes`."""
    return np.ascontiguousarray(np.asarray(a_zyx)[::-1].transpose(1, 2, 0))


def find_patients(root: str | Path) -> list[Path]:
    """Every ``pt_N`` folder under ``root`` (a checkout, a ``*-pats`` folder or one patient), by number."""
    root = Path(root)
    if not root.is_dir():
        raise OpenKBPInputError(f"{root}: not a folder; point --input at your OpenKBP provided-data folder")
    found = (
        [root]
        if _csv_path(root, "ct")
        else [
            p.parent
            for p in walk_files(root, keep=lambda f: f.name.startswith("ct.csv"))
            if p.parent.name.startswith("pt_")
        ]
    )
    if not found:
        raise OpenKBPInputError(
            f"no OpenKBP patient found under {root}: looked for pt_<N> folders holding ct.csv(.gz/.xz) in every "
            "folder below it, symbolic links followed; point --input at the provided-data folder"
        )

    def key(p: Path) -> tuple[str, int]:
        m = re.search(r"(\d+)$", p.name)
        return (str(p.parent), int(m.group(1)) if m else 0)

    return sorted(set(found), key=key)


def read_openkbp_patient(folder: str | Path, structure_set: StructureSet = OPENKBP_HN) -> OpenKBPPatient:
    """Read one patient folder (dose optional: test patients have none)."""
    folder = Path(folder)
    need = {"ct": _csv_path(folder, "ct"), "possible_dose_mask": _csv_path(folder, "possible_dose_mask")}
    for stem, p in need.items():
        if p is None:
            raise OpenKBPInputError(f"{folder}: {stem}.csv(.gz/.xz) is missing; every patient needs it")
    vox = _csv_path(folder, "voxel_dimensions")
    if vox is None:
        raise OpenKBPInputError(f"{folder}: voxel_dimensions.csv is missing")
    with open_csv(vox) as fh:
        dims = np.loadtxt(fh, dtype=np.float64).reshape(-1)
    if dims.shape != (3,) or np.any(dims <= 0):
        raise OpenKBPInputError(f"{vox}: expected three positive voxel sizes in mm, got {dims.tolist()}")
    ct = read_sparse_csv(need["ct"])
    ct_hu = from_openkbp_axes(np.where(ct > 0, ct, 0.0) - HU_OFFSET)
    dose_path = _csv_path(folder, "dose")
    dose = from_openkbp_axes(read_sparse_csv(dose_path)) if dose_path is not None else None
    pdm = from_openkbp_axes(read_sparse_csv(need["possible_dose_mask"])) > 0
    masks = {}
    for name in structure_set.channels:
        p = _csv_path(folder, name)
        if p is not None:
            masks[name] = from_openkbp_axes(read_sparse_csv(p)) > 0
    # axis 0 -> y (dims[0]), axis 1 -> x (dims[1]), axis 2 -> z (dims[2])
    grid = Grid(
        (0.0, 0.0, -(OPENKBP_SHAPE[2] - 1) * float(dims[2])),
        (float(dims[1]), float(dims[0]), float(dims[2])),
        OPENKBP_SHAPE,
    )
    return OpenKBPPatient(folder.name, ct_hu.astype(np.float32), dose, masks, pdm, grid)


def openkbp_constraints(patient: OpenKBPPatient, structure_set: StructureSet = OPENKBP_HN) -> ConstraintVector:
    """The per-case constraint vector of the head-and-neck layout (the documented rule).

    Targets: the target's dose level if its mask is present, else 0. Organs: absent -> 0 (no
    goal). Present: protocol limit L (``OPENKBP_LAYOUT`` defaults), relaxed towards the dose P of
    the highest-dose target within 5 mm of the organ by the fraction f of the organ's volume
    within 5 mm of that target: ``L + f · (P − L)`` when P > L. The rule uses the anatomy only,
    never the dose, so it is available for new patients.
    """
    from scipy import ndimage

    natural, sources = [], []
    spacing_zyx = patient.grid.spacing[::-1]
    near: dict[str, np.ndarray] = {}
    for t in structure_set.targets:
        if t in patient.masks and patient.masks[t].any():
            near[t] = ndimage.distance_transform_edt(~patient.masks[t], sampling=spacing_zyx) <= NEAR_PTV_MM
    for s in OPENKBP_LAYOUT:
        m = patient.masks.get(s.structure)
        if s.kind == "target":
            natural.append(float(structure_set.targets[s.structure]) if s.structure in near else 0.0)
            sources.append("structures")
        elif m is None or not m.any():
            natural.append(0.0)
            sources.append("absent")
        else:
            value, limit = s.default_natural, s.default_natural
            for t, zone in sorted(near.items(), key=lambda kv: -structure_set.targets[kv[0]]):
                f = float((m & zone).sum()) / float(m.sum())
                level = float(structure_set.targets[t])
                if f > 0 and level > limit:
                    value = limit + f * (level - limit)
                    break
            natural.append(min(value, RX_GY * 1.1))
            sources.append(SOURCE_RULE if value != limit else SOURCE_DEFAULT)
    return ConstraintVector(np.array(natural), sources, OPENKBP_LAYOUT)


def write_sparse_dose(dose_zyx: np.ndarray, possible_dose_mask_zyx: np.ndarray, path: str | Path) -> Path:
    """Write a predicted dose as the challenge's submission file (``pt_N.csv``): nonzero voxels of
    the dose times the possible-dose mask, ``index,data`` rows under the header ``,data``, atomically."""
    from vmat_monai.atomic import atomic_file

    dose = to_openkbp_axes(np.asarray(dose_zyx, dtype=np.float64) * (np.asarray(possible_dose_mask_zyx) > 0))
    flat = dose.reshape(-1)
    idx = np.flatnonzero(flat > 0)
    lines = [",data", *(f"{i},{flat[i]:.6g}" for i in idx)]
    with atomic_file(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return Path(path)
