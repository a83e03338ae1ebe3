"""Shared fixtures: a tiny synthetic DICOM-RT cohort generated once per test session."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

warnings.filterwarnings("ignore", category=UserWarning, module="pydicom")


@pytest.fixture(scope="session")
def tiny_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two tiny synthetic cases (seed 0) written as DICOM-RT."""
    from vmat_monai.data.synthetic.cohort import CohortSettings
    from vmat_monai.data.synthetic.cohort_runner import generate_cohort

    out = tmp_path_factory.mktemp("cohort")
    manifest = generate_cohort(out, 2, seed=0, settings=CohortSettings.tiny())
    assert not manifest["failed"], manifest["failed"]
    return out


@pytest.fixture(scope="session")
def converted(tiny_cohort: Path, tmp_path_factory: pytest.TempPathFactory):
    """The tiny cohort converted to case folders: (data folder, convert summary)."""
    from vmat_monai.data.convert_tree import convert_tree

    out = tmp_path_factory.mktemp("converted")
    return out, convert_tree(tiny_cohort, out)


@pytest.fixture(scope="session")
def dicompyler():
    """dicompyler-core (an independent DVH calculator) made importable with pydicom 3.

    dicompyler-core 0.5.6 imports ``pydicom.dicomio.read_file``, which pydicom 3 renamed to
    ``dcmread``; the alias below is the only adaptation.
    """
    import pydicom
    import pydicom.dicomio

    if not hasattr(pydicom.dicomio, "read_file"):
        pydicom.dicomio.read_file = pydicom.dcmread  # type: ignore[attr-defined]
    from dicompylercore import dicomparser, dvhcalc

    return dicomparser, dvhcalc
