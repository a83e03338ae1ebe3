"""DICOM-RT as MONAI ``ImageReader``s, so ``LoadImage(d)`` can read RT objects directly.

CT series need nothing of ours: MONAI's ``ITKReader`` / ``PydicomReader`` read a series folder.
:class:`RTDoseReader` reads one RTDOSE file (or several per-beam files on one grid, summed) as
dose in Gy with the RAS affine, so the usual ``Orientationd``/``Spacingd`` chain applies.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from monai.data import ImageReader
from monai.utils import MetaKeys, SpaceKeys, ensure_tuple

from vmat_monai.dicom.readers import DicomInputError, read_rtdose

__all__ = ["RTDoseReader"]


class RTDoseReader(ImageReader):
    """Read RTDOSE files as a dose array in Gy (spatial dims x, y, z) with a RAS affine.

    Several files given together (per-beam doses) must share one grid and are summed.
    """

    def verify_suffix(self, filename: Sequence[str | Path] | str | Path) -> bool:
        """True when every file is a DICOM file whose Modality is RTDOSE."""
        for f in ensure_tuple(filename):
            try:
                ds = pydicom.dcmread(str(f), stop_before_pixels=True, specific_tags=["Modality"])
            except Exception:
                return False
            if str(ds.get("Modality", "")) != "RTDOSE":
                return False
        return True

    def read(self, data: Sequence[str | Path] | str | Path, **kwargs: Any) -> list[Path]:
        """The files themselves; reading happens in :meth:`get_data`."""
        return [Path(f) for f in ensure_tuple(data)]

    def get_data(self, img: list[Path]) -> tuple[np.ndarray, dict]:
        """(dose in Gy indexed [x, y, z], metadata with affine, spatial shape and dose units)."""
        total, grid = None, None
        for path in img:
            dose, g, _ = read_rtdose(path)
            if grid is not None and g != grid:
                raise DicomInputError(f"{path}: its dose grid differs from {img[0]}; resample before summing")
            total, grid = (dose if total is None else total + dose), g
        assert total is not None and grid is not None
        affine = grid.affine_ras()
        meta = {
            MetaKeys.AFFINE: affine,
            MetaKeys.ORIGINAL_AFFINE: affine.copy(),
            MetaKeys.SPATIAL_SHAPE: np.asarray(total.shape[::-1]),
            MetaKeys.SPACE: SpaceKeys.RAS,
            MetaKeys.ORIGINAL_CHANNEL_DIM: float("nan"),
            "dose_units": "GY",
            "filename_or_obj": str(img[0]),
        }
        return np.ascontiguousarray(total.transpose(2, 1, 0)).astype(np.float32), meta
