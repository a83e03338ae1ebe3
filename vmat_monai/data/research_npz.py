"""The original research code's preprocessed NPZ cases -> our case folders.

Format (the research preprocessing script, v2.2 and v2.3)::

    ct           (Y, X, Z) float32   CT normalised as clip(HU, -1000, 3000) / 4000 + 0.5
    dose         (Y, X, Z) float32   dose / metadata["normalization_dose_gy"] (the prescription)
    masks        (8, Y, X, Z) uint8  channels PTV70, PTV56, Prostate, Rectum, Bladder, Femur_L, Femur_R, Bowel
    masks_sdf    (8, Y, X, Z)        signed distances (not used: we recompute them)
    constraints  (13,) float32       the constraint vector (same layout as ours)
    metadata     dict (pickled)      voxel_spacing_mm (v2.3) or target_spacing_mm (v2.2), crop_box, ...

Y runs along the CT rows (posterior), X along the columns (patient left), Z along ascending slices
(head-first supine). The files carry no patient origin: the first voxel is placed at
``crop_box`` start × spacing from the original CT's first voxel, so positions are relative.
Because ``metadata`` is a pickled dict, ``np.load(allow_pickle=True)`` runs code from the file:
convert only NPZ files you trust.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vmat_monai.constraints import PROSTATE_LAYOUT, ConstraintVector
from vmat_monai.errors import SourceInputError
from vmat_monai.geometry import Grid
from vmat_monai.structures import PROSTATE_SIB

__all__ = ["ResearchCase", "npz_case_id", "read_research_npz"]

DEFAULT_SPACING_MM = (1.0, 1.0, 2.0)  # the research code's own last-resort fallback (v2.2)
SOURCE_NPZ = "research_npz"


@dataclass
class ResearchCase:
    """A research NPZ case in our conventions: arrays [z, y, x], HU and Gy."""

    ct_hu: np.ndarray
    dose_gy: np.ndarray
    masks: np.ndarray  # (C, z, y, x) bool, PROSTATE_SIB order
    grid: Grid
    constraints: ConstraintVector
    prescription_gy: float
    warnings: list[str]


def npz_case_id(path: Path, keep_phi: bool) -> str:
    """Hashed case id from the file name (which often is a patient id) unless ``keep_phi``."""
    if keep_phi:
        return path.stem
    return "case_" + hashlib.sha256(path.stem.encode()).hexdigest()[:12]


def _to_zyx(a: np.ndarray) -> np.ndarray:
    """(Y, X, Z) -> [z, y, x]."""
    return np.ascontiguousarray(np.asarray(a).transpose(2, 0, 1))


def read_research_npz(path: str | Path) -> ResearchCase:
    """Read one research NPZ case; raises SourceInputError naming the file and the problem."""
    path = Path(path)
    try:
        data = np.load(str(path), allow_pickle=True)
    except Exception as exc:
        raise SourceInputError(f"{path}: unreadable NPZ ({type(exc).__name__}: {exc})") from None
    missing = [k for k in ("ct", "dose", "masks", "constraints") if k not in data.files]
    if missing:
        raise SourceInputError(f"{path}: NPZ lacks {missing}; expected the research format (ct, dose, masks, ...)")
    warnings: list[str] = []
    meta: dict[str, Any] = {}
    if "metadata" in data.files:
        m = data["metadata"]
        meta = m.item() if isinstance(m, np.ndarray) else dict(m)
    ct, dose, masks = data["ct"], data["dose"], data["masks"]
    n = PROSTATE_SIB.n_channels
    if ct.ndim != 3 or dose.shape != ct.shape or masks.shape != (n, *ct.shape):
        raise SourceInputError(
            f"{path}: shapes ct {ct.shape}, dose {dose.shape}, masks {masks.shape} do not match (Y, X, Z) and "
            f"({n}, Y, X, Z)"
        )
    for name, arr in (("ct", ct), ("dose", dose)):
        if not np.all(np.isfinite(arr)):
            raise SourceInputError(f"{path}: {name} contains NaN/inf values")
    vec = np.asarray(data["constraints"], dtype=np.float64).reshape(-1)
    if vec.shape != (len(PROSTATE_LAYOUT),):
        raise SourceInputError(f"{path}: constraints has {vec.size} values, expected {len(PROSTATE_LAYOUT)}")
    if "voxel_spacing_mm" in meta:
        sp_yxz = tuple(float(v) for v in meta["voxel_spacing_mm"])
    elif "target_spacing_mm" in meta:
        sp_yxz = tuple(float(v) for v in meta["target_spacing_mm"])
    else:
        sp_yxz = DEFAULT_SPACING_MM
        warnings.append(f"no spacing in metadata; assumed {DEFAULT_SPACING_MM} mm (the research code's default)")
    rx = float(meta.get("normalization_dose_gy", PROSTATE_SIB.prescription_gy))
    if "normalization_dose_gy" not in meta:
        warnings.append(f"no normalization_dose_gy in metadata; assumed {rx:g} Gy")
    crop = meta.get("crop_box", {}) or {}
    origin = (
        float(crop.get("x_start", 0)) * sp_yxz[1],
        float(crop.get("y_start", 0)) * sp_yxz[0],
        float(crop.get("z_start", 0)) * sp_yxz[2],
    )
    ct_zyx = _to_zyx(ct)
    grid = Grid(origin, (sp_yxz[1], sp_yxz[0], sp_yxz[2]), ct_zyx.shape)  # type: ignore[arg-type]
    scales = np.array([s.scale for s in PROSTATE_LAYOUT])
    cv = ConstraintVector(vec * scales, [SOURCE_NPZ] * len(PROSTATE_LAYOUT))
    return ResearchCase(
        ct_hu=(ct_zyx.astype(np.float32) - 0.5) * 4000.0,
        dose_gy=_to_zyx(dose).astype(np.float32) * rx,
        masks=np.ascontiguousarray(np.asarray(masks).transpose(0, 3, 1, 2) > 0),
        grid=grid,
        constraints=cv,
        prescription_gy=rx,
        warnings=warnings,
    )
