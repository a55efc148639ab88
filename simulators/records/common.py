"""What every rtsim treatment record shares: equipment identity, dates, patient/study, file meta, writing."""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime
from importlib import metadata
from pathlib import Path

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian

from machine_models.schema import MachineModel
from simulators.plans.model import PatientStudy, PlanIdentity
from simulators.records.uids import IMPLEMENTATION_CLASS_UID

MANUFACTURER = "rtsim"


def rtsim_version() -> str:
    """The installed rtsim version (Software Versions, Implementation Version Name)."""
    try:
        return metadata.version("rtsim")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "0"


def mark_written_encoding(ds: Dataset) -> None:
    """Declare ``ds`` (recursively) as already in Explicit VR Little Endian with its character set.

    pydicom otherwise treats a new dataset's encoding as unknown and re-parses and re-checks every
    element on write (ambiguous VR correction): half of a large record's write time.
    """
    ds.set_original_encoding(False, True, ds._character_set)
    for element in ds.values():
        if element.VR == "SQ" and not isinstance(element, RawDataElement):  # raw: encoded already
            for item in element.value:
                mark_written_encoding(item)


def dicom_date_time(moment: datetime) -> tuple[str, str]:
    """DA and TM strings for ``moment`` (TM with microseconds); f-strings: ~3x strftime's speed."""
    return (
        f"{moment.year:04d}{moment.month:02d}{moment.day:02d}",
        f"{moment.hour:02d}{moment.minute:02d}{moment.second:02d}.{moment.microsecond:06d}",
    )


def patient_and_study(ds: Dataset, patient: PatientStudy) -> None:
    """Patient and General Study modules, copied from the plan's patient and study."""
    ds.PatientName = patient.patient_name
    ds.PatientID = patient.patient_id
    ds.PatientBirthDate = patient.patient_birth_date
    ds.PatientSex = patient.patient_sex
    ds.StudyInstanceUID = patient.study_instance_uid
    ds.StudyDate = patient.study_date
    ds.StudyTime = patient.study_time
    ds.ReferringPhysicianName = patient.referring_physician_name
    ds.StudyID = patient.study_id
    ds.AccessionNumber = patient.accession_number


def series_and_equipment(
    ds: Dataset,
    machine: MachineModel,
    *,
    series_instance_uid: str,
    description: str,
    operator_name: str,
    station_name: str,
    institution_name: str = "",
    device_serial_number: str | None = None,
) -> None:
    """RT Series and General Equipment modules of a record: rtsim, simulating ``machine``."""
    ds.Modality = "RTRECORD"
    ds.SeriesInstanceUID = series_instance_uid
    ds.SeriesNumber = 1
    ds.SeriesDescription = description[:64]
    ds.OperatorsName = operator_name
    ds.Manufacturer = MANUFACTURER
    ds.InstitutionName = institution_name
    ds.StationName = station_name[:16]
    ds.ManufacturerModelName = f"rtsim {machine.model_id}"[:64]
    ds.DeviceSerialNumber = device_serial_number or f"RTSIM-{machine.model_id}"[:64]
    ds.SoftwareVersions = f"rtsim {rtsim_version()}"[:64]


def plan_and_record_references(
    ds: Dataset, identity: PlanIdentity, record_class_uid: str, referenced_record_uids: Sequence[str]
) -> None:
    """Referenced RT Plan Sequence, and the Referenced Treatment Record Sequence naming earlier records of
    the same fraction (``record_class_uid``: this record's SOP class)."""
    plan_ref = Dataset()
    plan_ref.ReferencedSOPClassUID = identity.sop_class_uid
    plan_ref.ReferencedSOPInstanceUID = identity.sop_instance_uid
    ds.ReferencedRTPlanSequence = DicomSequence([plan_ref])
    if referenced_record_uids:
        refs = []
        for uid in referenced_record_uids:
            ref = Dataset()
            ref.ReferencedSOPClassUID = record_class_uid
            ref.ReferencedSOPInstanceUID = uid
            refs.append(ref)
        ds.ReferencedTreatmentRecordSequence = DicomSequence(refs)


def file_meta_for(ds: Dataset) -> FileMetaDataset:
    """File Meta Information for ``ds`` written as Explicit VR Little Endian by rtsim."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = f"RTSIM_{rtsim_version()}"[:16]
    return meta


def write_record(ds: Dataset, path: str | os.PathLike[str]) -> Path:
    """Write ``ds`` as a DICOM Part 10 file (preamble + File Meta) atomically; returns the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if "TransferSyntaxUID" not in getattr(ds, "file_meta", Dataset()):
        ds.file_meta = file_meta_for(ds)
    partial = target.with_name(target.name + ".partial")
    ds.save_as(partial, enforce_file_format=True)
    os.replace(partial, target)
    return target
