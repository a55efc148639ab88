"""The part every sample RT Plan shares: file meta, patient, study, series, equipment, RT General Plan."""

from __future__ import annotations

from datetime import datetime

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, RTPlanStorage, generate_uid

UID_PREFIX = "1.2.826.0.1.3680043.8.498."  # pydicom's registered root


def sample_plan_header(
    label: str, *, patient_id: str, patient_name: str, patient_sex: str, when: datetime
) -> Dataset:
    """An RT Plan with everything but its beams or application setups (UIDs derived from the names)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = RTPlanStorage
    ds.SOPClassUID = RTPlanStorage
    ds.SOPInstanceUID = generate_uid(UID_PREFIX, entropy_srcs=[patient_id, label, "plan"])
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.InstanceCreationDate = when.strftime("%Y%m%d")
    ds.InstanceCreationTime = when.strftime("%H%M%S")
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = "19600101"
    ds.PatientSex = patient_sex
    ds.StudyInstanceUID = generate_uid(UID_PREFIX, entropy_srcs=[patient_id, "study"])
    ds.StudyDate = when.strftime("%Y%m%d")
    ds.StudyTime = when.strftime("%H%M%S")
    ds.ReferringPhysicianName = ""
    ds.StudyID = "1"
    ds.AccessionNumber = ""
    ds.Modality = "RTPLAN"
    ds.SeriesInstanceUID = generate_uid(UID_PREFIX, entropy_srcs=[patient_id, label, "series"])
    ds.SeriesNumber = 1
    ds.OperatorsName = ""
    ds.FrameOfReferenceUID = generate_uid(UID_PREFIX, entropy_srcs=[patient_id, "frame"])
    ds.PositionReferenceIndicator = ""
    ds.Manufacturer = "rtsim"
    ds.ManufacturerModelName = "rtsim sample plan generator"
    ds.SoftwareVersions = "1"
    ds.RTPlanLabel = label[:16]
    ds.RTPlanName = f"rtsim sample {label}"[:64]
    ds.RTPlanDate = ds.StudyDate
    ds.RTPlanTime = ds.StudyTime
    ds.PlanIntent = "CURATIVE"
    ds.RTPlanGeometry = "TREATMENT_DEVICE"
    ds.InstanceNumber = 1
    return ds
