"""Helpers both delivery instruction IODs (beams and brachy) use to read and finish datasets."""

from __future__ import annotations

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian

from simulators.errors import PlanReadError


def int_value(item: Dataset, keyword: str, tag: str, where: str, *, required: bool = True) -> int | None:
    """An integer attribute; PlanReadError naming ``where``, keyword and tag when missing or not a number."""
    value = item.get(keyword)
    if value in (None, ""):
        if required:
            raise PlanReadError(f"{where}: {keyword} {tag} is missing or empty")
        return None
    try:
        return int(value)
    except (TypeError, ValueError) as error:
        raise PlanReadError(f"{where}: {keyword} {tag} {value!r} is not an integer") from error


def attach_file_meta(ds: Dataset) -> Dataset:
    """Give ``ds`` the file meta it needs to be stored or sent (Explicit VR Little Endian)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta = meta
    return ds
