"""Helpers both delivery instruction IODs (beams and brachy) use to read and finish datasets."""

from __future__ import annotations

from pydicom.dataset import Dataset

from simulators.errors import PlanReadError
from simulators.records.common import file_meta_for


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


def instruction_tasks(
    ds: Dataset, source: str, *, sop_class_uid: str, iod_name: str, task_keyword: str, task_tag: str
) -> tuple[str, list[Dataset]]:
    """Check a delivery instruction's SOP class and plan reference; return (where, its task items).

    ``where`` names the instance in error messages; PlanReadError when the class is another IOD or the
    Referenced RT Plan Sequence or the task sequence is missing or empty.
    """
    where = f"{source} {ds.get('SOPInstanceUID', '')}".strip()
    sop_class = str(ds.get("SOPClassUID", "") or "")
    if sop_class and sop_class != sop_class_uid:
        raise PlanReadError(f"{where}: SOP Class UID {sop_class} is not {iod_name}")
    if not ds.get("ReferencedRTPlanSequence"):
        raise PlanReadError(f"{where}: Referenced RT Plan Sequence (300C,0002) is missing or empty")
    items = ds.get(task_keyword)
    if not items:
        raise PlanReadError(f"{where}: {attribute_words(task_keyword)} {task_tag} is missing or empty")
    return where, list(items)


def attribute_words(keyword: str) -> str:
    """``BeamTaskSequence`` -> ``Beam Task Sequence``."""
    return "".join(f" {c}" if c.isupper() and i else c for i, c in enumerate(keyword))


def attach_file_meta(ds: Dataset) -> Dataset:
    """Give ``ds`` the file meta it needs to be stored or sent (Explicit VR Little Endian, rtsim's)."""
    ds.file_meta = file_meta_for(ds)
    return ds
