"""Shared pieces of the DICOM writers: identity of a patient/study and dataset skeletons."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid

from vmat_monai.atomic import atomic_file

__all__ = [
    "CT_IMAGE_STORAGE",
    "RT_DOSE_STORAGE",
    "RT_PLAN_STORAGE",
    "RT_STRUCT_STORAGE",
    "StudyInfo",
    "new_dataset",
    "save_atomic",
    "uid_from",
]

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
RT_DOSE_STORAGE = "1.2.840.10008.5.1.4.1.1.481.2"
RT_STRUCT_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
RT_PLAN_STORAGE = "1.2.840.10008.5.1.4.1.1.481.5"
MANUFACTURER = "vmat-monai"


def uid_from(*parts: object) -> str:
    """Deterministic DICOM UID derived from ``parts`` (same parts, same UID)."""
    return generate_uid(entropy_srcs=[str(p) for p in parts])


@dataclass
class StudyInfo:
    """Patient and study identity shared by every object of one case.

    Args:
        patient_name: DICOM PN, e.g. ``SYNTH^P001``.
        patient_id: patient ID.
        study_uid: StudyInstanceUID.
        frame_uid: FrameOfReferenceUID of the CT (and of every RT object).
        study_date: YYYYMMDD.
        study_id: short study ID.
    """

    patient_name: str
    patient_id: str
    study_uid: str
    frame_uid: str
    study_date: str = "20260101"
    study_time: str = "120000"
    study_id: str = "1"
    extra: dict[str, str] = field(default_factory=dict)


def new_dataset(sop_class: str, sop_uid: str, study: StudyInfo, modality: str, series_uid: str) -> FileDataset:
    """A FileDataset with file meta, patient, study, series and frame-of-reference modules."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = FileDataset("", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.Modality = modality
    ds.PatientName = study.patient_name
    ds.PatientID = study.patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = "M"
    ds.StudyInstanceUID = study.study_uid
    ds.StudyDate = study.study_date
    ds.StudyTime = study.study_time
    ds.StudyID = study.study_id
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = 1
    ds.FrameOfReferenceUID = study.frame_uid
    ds.PositionReferenceIndicator = ""
    ds.Manufacturer = MANUFACTURER
    ds.InstanceCreationDate = study.study_date
    ds.InstanceCreationTime = study.study_time
    for keyword, value in study.extra.items():  # e.g. PatientSex of a real patient
        setattr(ds, keyword, value)
    return ds


def save_atomic(ds: Dataset, path: str | Path) -> Path:
    """Write ``ds`` to ``path`` through a temporary file and a rename (no half-written files)."""
    with atomic_file(path) as tmp:
        ds.save_as(str(tmp), enforce_file_format=True)
    return Path(path)
