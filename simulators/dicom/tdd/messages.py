"""TDW-II message contents on the device side (RO-58..RO-65), as pydicom Datasets.

Pure data in, Dataset out (and back): no networking here. Shapes follow
``shared/reference/dicom-interface.md`` §1.5 and PS3.4 CC (final-state requirements, Table CC.2.5-3:
a CANCELED UPS needs the Procedure Step Progress Information Sequence with the Cancellation DateTime
and the Discontinuation Reason Code Sequence; a COMPLETED one needs the Performed Procedure Sequence).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime

from pydicom import Dataset
from pydicom.charset import convert_encodings, decode_bytes
from pydicom.dataelem import RawDataElement
from pydicom.sequence import Sequence

from simulators.dicom import codes
from simulators.dicom.codes import Code
from simulators.errors import RtsimError
from simulators.plans.dicom_bytes import DicomBytesError, RawItem, parse_items

DELIVERY_INSTRUCTION_CLASSES = (
    codes.RT_BEAMS_DELIVERY_INSTRUCTION_STORAGE,
    codes.RT_BRACHY_DELIVERY_INSTRUCTION_STORAGE,
)
PLAN_CLASSES = (codes.RT_PLAN_STORAGE, codes.RT_ION_PLAN_STORAGE)

# tags read from C-FIND response identifiers (by tag: a keyword lookup per access adds up per item)
TAG_CODE_VALUE = 0x00080100
TAG_CODING_SCHEME = 0x00080102
TAG_CODE_MEANING = 0x00080104
TAG_SOP_INSTANCE_UID = 0x00080018
TAG_RETRIEVE_AE = 0x00080054
TAG_REFERENCED_SOP_SEQUENCE = 0x00081199
TAG_REFERENCED_SOP_CLASS = 0x00081150
TAG_REFERENCED_SOP_INSTANCE = 0x00081155
TAG_PATIENT_NAME = 0x00100010
TAG_PATIENT_ID = 0x00100020
TAG_STUDY_UID = 0x0020000D
TAG_SERIES_UID = 0x0020000E
TAG_START_DATETIME = 0x00404005
TAG_WORKITEM_CODE_SEQUENCE = 0x00404018
TAG_INPUT_INFORMATION_SEQUENCE = 0x00404021
TAG_STATION_CODE_SEQUENCE = 0x00404025
TAG_INPUT_READINESS = 0x00404041
TAG_CONCEPT_NAME_CODE_SEQUENCE = 0x0040A043
TAG_TEXT_VALUE = 0x0040A160
TAG_RETRIEVAL_SEQUENCE = 0x0040E021
TAG_PRIORITY = 0x00741200
TAG_LABEL = 0x00741204
TAG_PROCESSING_PARAMETERS_SEQUENCE = 0x00741210


class _ParsedItem:
    """A sequence item read straight from its bytes (``values``: tag -> bytes, or a nested sequence's
    items), with the character sets of the identifier it came from."""

    __slots__ = ("encodings", "values")

    def __init__(self, values: RawItem, encodings: list[str]) -> None:
        self.values = values
        self.encodings = encodings


Item = Dataset | _ParsedItem


def _ascii(value: bytes) -> str | None:
    """``value`` as text if it is plain ASCII without ISO 2022 escapes (else None)."""
    return value.decode("ascii") if value.isascii() and b"\x1b" not in value else None


def _text(ds: Item, tag: int, *, strip: bool = True) -> str:
    """A text attribute's value ('' if absent or empty), read straight from its bytes where possible (a
    received identifier's elements are raw; converting each one through pydicom cost ~1.5 ms per
    worklist item), otherwise through pydicom (character sets, values already converted).
    Trailing spaces and NULs are dropped, as pydicom does; ``strip`` drops leading spaces too."""
    if isinstance(ds, _ParsedItem):
        value = ds.values.get(tag)
        if not isinstance(value, bytes):
            return ""
        text = _ascii(value)
        if text is None:
            text = decode_bytes(value, ds.encodings, set())
        text = text.rstrip(" \x00")
        return text.strip() if strip else text
    elem = ds.get_item(tag)
    if elem is None:
        return ""
    value = elem.value
    text = _ascii(value) if isinstance(value, bytes) else None
    if text is not None:
        text = text.rstrip(" \x00")
    else:
        value = ds[tag].value
        text = "" if value is None else str(value)
    return text.strip() if strip else text


def _items(ds: Item, tag: int) -> list[Item]:
    """The items of a sequence attribute ([] if absent or empty); a still-encoded (little endian)
    sequence is read straight from its bytes rather than into pydicom Datasets."""
    if isinstance(ds, _ParsedItem):
        value = ds.values.get(tag)
        return [_ParsedItem(item, ds.encodings) for item in value] if isinstance(value, list) else []
    elem = ds.get_item(tag)
    if elem is None:
        return []
    if isinstance(elem, RawDataElement) and isinstance(elem.value, bytes) and elem.is_little_endian:
        try:
            items = parse_items(elem.value, elem.is_implicit_VR)
        except DicomBytesError:
            pass  # pydicom reads it below, or names what is wrong with it
        else:
            encodings = convert_encodings(ds.get("SpecificCharacterSet"))
            return [_ParsedItem(item, encodings) for item in items]
    return list(ds[tag].value or [])


class WorkitemError(RtsimError):
    """A worklist item from the TMS lacks something the device needs (names the UPS and attribute)."""


def code_item(code: Code) -> Dataset:
    """A code sequence item for ``code``."""
    ds = Dataset()
    ds.CodeValue = code.value
    ds.CodingSchemeDesignator = code.scheme
    ds.CodeMeaning = code.meaning
    return ds


def code_from_item(item: Item) -> Code:
    return Code(
        _text(item, TAG_CODE_VALUE, strip=False),
        _text(item, TAG_CODING_SCHEME, strip=False),
        _text(item, TAG_CODE_MEANING, strip=False),
    )


def code_to_dict(code: Code | None) -> dict[str, str]:
    return {} if code is None else {"value": code.value, "scheme": code.scheme, "meaning": code.meaning}


def code_from_dict(data: dict[str, str]) -> Code | None:
    if not data:
        return None
    return Code(data.get("value", ""), data.get("scheme", ""), data.get("meaning", ""))


# CID 9300 Procedure Discontinuation Reasons used by the device (meanings from pydicom's DCM concepts)
REASON_EQUIPMENT_FAILURE = Code("110501", "DCM", "Equipment failure")
REASON_UNSPECIFIED = codes.REASON_DISCONTINUED_UNSPECIFIED
REASON_OBJECTS_INCORRECTLY_FORMATTED = Code("110521", "DCM", "Objects incorrectly formatted")
REASON_OBJECT_SET_INCOMPLETE = Code("110523", "DCM", "Object Set incomplete")
REASON_RESOURCE_INADEQUATE = Code("110527", "DCM", "Resource inadequate")

_PRIORITY_RANK = {"HIGH": 0, "MEDIUM": 1, "LOW": 2}


def latin1(text: str) -> str:
    """``text`` encodable as ISO_IR 100 (the only character set the IHE-RO test tool accepts in N-SET)."""
    return text.encode("latin-1", errors="replace").decode("latin-1")


def dicom_dt(moment: datetime) -> str:
    """DICOM DT with seconds (local wall clock, no offset)."""
    return moment.strftime("%Y%m%d%H%M%S")


@dataclass(frozen=True, slots=True)
class InputReference:
    """One item of the Input Information Sequence: which instance, and which AE to retrieve it from."""

    sop_class_uid: str
    sop_instance_uid: str
    study_uid: str
    series_uid: str
    retrieve_ae: str


@dataclass(frozen=True, slots=True)
class Workitem:
    """A scheduled UPS as the device sees it in the RO-58 response."""

    ups_uid: str
    label: str
    priority: str
    start_datetime: str
    input_readiness: str
    station_code: Code | None
    workitem_code: Code | None
    delivery_type: str  # Scheduled Processing Parameter 121740, "" if absent
    inputs: tuple[InputReference, ...]
    patient_id: str
    patient_name: str

    def inputs_of(self, classes: Iterable[str]) -> list[InputReference]:
        wanted = set(classes)
        return [ref for ref in self.inputs if ref.sop_class_uid in wanted]

    @property
    def plan(self) -> InputReference:
        """The RT Plan input (WorkitemError if there is none)."""
        plans = self.inputs_of(PLAN_CLASSES)
        if not plans:
            raise WorkitemError(
                f"UPS {self.ups_uid}: Input Information Sequence (0040,4021) references no RT Plan"
            )
        return plans[0]

    @property
    def delivery_instruction(self) -> InputReference | None:
        found = self.inputs_of(DELIVERY_INSTRUCTION_CLASSES)
        return found[0] if found else None

    def sort_key(self) -> tuple[int, str, str]:
        """Order of preference: priority (HIGH first), then scheduled start, then UID (deterministic)."""
        return (_PRIORITY_RANK.get(self.priority, 3), self.start_datetime or "~", self.ups_uid)


def worklist_query(station_code_value: str, workitem_code: Code, day: date) -> Dataset:
    """RO-58 C-FIND identifier: matching keys (station, SCHEDULED, today, workitem) and return keys."""
    ds = Dataset()
    ds.SOPClassUID = ""
    ds.SOPInstanceUID = ""
    ds.PatientName = ""
    ds.PatientID = ""
    ds.StudyInstanceUID = ""
    ds.ProcedureStepState = "SCHEDULED"
    ds.ScheduledProcedureStepPriority = ""
    ds.WorklistLabel = ""
    ds.ProcedureStepLabel = ""
    ds.InputReadinessState = ""
    day_text = day.strftime("%Y%m%d")
    ds.ScheduledProcedureStepStartDateTime = f"{day_text}000000-{day_text}235959"
    station = Dataset()
    station.CodeValue = station_code_value
    station.CodingSchemeDesignator = ""
    station.CodeMeaning = ""
    ds.ScheduledStationNameCodeSequence = Sequence([station])
    workitem = code_item(workitem_code)
    workitem.CodeMeaning = ""  # match on value and scheme only, as the IHE-RO request sample does
    ds.ScheduledWorkitemCodeSequence = Sequence([workitem])
    ds.ScheduledProcessingParametersSequence = Sequence()
    ds.InputInformationSequence = Sequence()
    return ds


def _first_code(ds: Dataset, keyword: str) -> Code | None:
    seq = ds.get(keyword)
    if not seq:
        return None
    return code_from_item(seq[0])


def _first_code_at(ds: Item, tag: int) -> Code | None:
    items = _items(ds, tag)
    return code_from_item(items[0]) if items else None


def parse_workitem(ds: Dataset) -> Workitem:
    """Read a C-FIND response identifier (WorkitemError names the UPS and the attribute if unusable)."""
    ups_uid = _text(ds, TAG_SOP_INSTANCE_UID, strip=False)
    if not ups_uid:
        raise WorkitemError("worklist item without SOP Instance UID (0008,0018): cannot address the UPS")
    inputs = []
    for index, item in enumerate(_items(ds, TAG_INPUT_INFORMATION_SEQUENCE)):
        where = f"UPS {ups_uid}: Input Information Sequence (0040,4021) item {index + 1}"
        refs = _items(item, TAG_REFERENCED_SOP_SEQUENCE)
        if not refs:
            raise WorkitemError(f"{where}: Referenced SOP Sequence (0008,1199) is missing or empty")
        retrieval = _items(item, TAG_RETRIEVAL_SEQUENCE)
        retrieve_ae = _text(retrieval[0], TAG_RETRIEVE_AE) if retrieval else ""
        for ref in refs:
            inputs.append(
                InputReference(
                    sop_class_uid=_text(ref, TAG_REFERENCED_SOP_CLASS, strip=False),
                    sop_instance_uid=_text(ref, TAG_REFERENCED_SOP_INSTANCE, strip=False),
                    study_uid=_text(item, TAG_STUDY_UID, strip=False),
                    series_uid=_text(item, TAG_SERIES_UID, strip=False),
                    retrieve_ae=retrieve_ae,
                )
            )
    delivery_type = ""
    for item in _items(ds, TAG_PROCESSING_PARAMETERS_SEQUENCE):
        concept = _first_code_at(item, TAG_CONCEPT_NAME_CODE_SEQUENCE)
        # the IHE-RO 2013 cached response uses the placeholder code "ccc001" with the right meaning
        if (
            concept is None
            or concept.value == codes.CONCEPT_TREATMENT_DELIVERY_TYPE.value
            or concept.meaning.strip().lower() == codes.CONCEPT_TREATMENT_DELIVERY_TYPE.meaning.lower()
        ):
            delivery_type = _text(item, TAG_TEXT_VALUE, strip=False)
    return Workitem(
        ups_uid=ups_uid,
        label=_text(ds, TAG_LABEL, strip=False),
        priority=_text(ds, TAG_PRIORITY).upper(),
        start_datetime=_text(ds, TAG_START_DATETIME, strip=False),
        input_readiness=_text(ds, TAG_INPUT_READINESS),
        station_code=_first_code_at(ds, TAG_STATION_CODE_SEQUENCE),
        workitem_code=_first_code_at(ds, TAG_WORKITEM_CODE_SEQUENCE),
        delivery_type=delivery_type,
        inputs=tuple(inputs),
        patient_id=_text(ds, TAG_PATIENT_ID, strip=False),
        patient_name=_text(ds, TAG_PATIENT_NAME, strip=False),
    )


def eligible(item: Workitem, station_code_value: str, workitem_code: Code) -> bool:
    """Whether this device should take the item (the TMS may return more than was asked for)."""
    if item.station_code is not None and item.station_code.value != station_code_value:
        return False
    if item.workitem_code is not None and item.workitem_code.value != workitem_code.value:
        return False
    return item.input_readiness in ("", "READY")


def move_identifier(ref: InputReference) -> Dataset:
    """RO-59/RO-61 C-MOVE identifier, IMAGE level (Study Root)."""
    ds = Dataset()
    ds.QueryRetrieveLevel = "IMAGE"
    ds.StudyInstanceUID = ref.study_uid
    ds.SeriesInstanceUID = ref.series_uid
    ds.SOPInstanceUID = ref.sop_instance_uid
    return ds


def state_change(state: str, transaction_uid: str) -> Dataset:
    """Action Information of N-ACTION type 1 (RO-60 IN PROGRESS, RO-65 COMPLETED/CANCELED)."""
    ds = Dataset()
    ds.ProcedureStepState = state
    ds.TransactionUID = transaction_uid
    return ds


def subscription(receiving_ae: str, deletion_lock: bool = False) -> Dataset:
    """Action Information of N-ACTION type 3 (subscribe) on the Watch context."""
    ds = Dataset()
    ds.ReceivingAE = receiving_ae
    ds.DeletionLock = "TRUE" if deletion_lock else "FALSE"
    return ds


def unsubscription(receiving_ae: str) -> Dataset:
    """Action Information of N-ACTION type 4 (unsubscribe)."""
    ds = Dataset()
    ds.ReceivingAE = receiving_ae
    return ds


def _beam_parameter(beam_number: int) -> Dataset:
    item = Dataset()
    item.ValueType = "TEXT"
    item.ConceptNameCodeSequence = Sequence([code_item(codes.CONCEPT_REFERENCED_BEAM_NUMBER_IN_PROGRESS)])
    item.TextValue = str(beam_number)
    return item


def _percent(value: float) -> str:
    clipped = min(max(float(value), 0.0), 100.0)
    return f"{clipped:.1f}".rstrip("0").rstrip(".") or "0"


def progress_update(
    transaction_uid: str, percent: float, beam_number: int | None = None, description: str = ""
) -> Dataset:
    """RO-62 modification list: progress (0..100 %) and the beam in progress; Output Information empty."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.TransactionUID = transaction_uid
    progress = Dataset()
    progress.ProcedureStepProgress = _percent(percent)
    if description:
        progress.ProcedureStepProgressDescription = latin1(description)[:1024]
    ds.ProcedureStepProgressInformationSequence = Sequence([progress])
    performed = Dataset()
    performed.PerformedProcessingParametersSequence = Sequence(
        [_beam_parameter(beam_number)] if beam_number is not None else []
    )
    performed.OutputInformationSequence = Sequence()
    ds.UnifiedProcedureStepPerformedProcedureSequence = Sequence([performed])
    return ds


@dataclass(frozen=True, slots=True)
class OutputReference:
    """The record this session produced and where it is stored (RO-64 Output Information)."""

    sop_class_uid: str
    sop_instance_uid: str
    study_uid: str
    series_uid: str
    retrieve_ae: str


@dataclass(frozen=True, slots=True)
class Cancellation:
    """Why a workitem ends CANCELED (PS3.4 final-state requirement X)."""

    moment: datetime
    reason_text: str
    reason_code: Code


def final_update(
    transaction_uid: str,
    *,
    progress_percent: float,
    station_code: Code | None,
    workitem_code: Code | None,
    performed_start: str,
    performed_end: str,
    output: OutputReference | None,
    cancellation: Cancellation | None = None,
    performer_name: str = "",
    radiation_delivered: bool = True,
    progress_description: str = "",
) -> Dataset:
    """RO-64 modification list. Never carries SOP Class/Instance UID or Procedure Step State.

    ``radiation_delivered=False`` (a refusal, nothing delivered) leaves out the Performed Procedure
    Sequence, as the IHE-RO test tool expects for a cancel without radiation. ``progress_description``
    goes with the progress (the device repeats its last RO-62's, so the progress does not change).
    """
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.TransactionUID = transaction_uid
    progress = Dataset()
    progress.ProcedureStepProgress = _percent(progress_percent)
    if progress_description:
        progress.ProcedureStepProgressDescription = latin1(progress_description)[:1024]
    if cancellation is not None:
        progress.ProcedureStepCancellationDateTime = dicom_dt(cancellation.moment)
        progress.ReasonForCancellation = latin1(cancellation.reason_text)[:10240]
        progress.ProcedureStepDiscontinuationReasonCodeSequence = Sequence(
            [code_item(cancellation.reason_code)]
        )
    ds.ProcedureStepProgressInformationSequence = Sequence([progress])
    if not radiation_delivered and output is None:
        return ds
    performed = Dataset()
    if station_code is not None:
        performed.PerformedStationNameCodeSequence = Sequence([code_item(station_code)])
    performed.PerformedProcedureStepStartDateTime = performed_start
    performed.PerformedProcedureStepEndDateTime = performed_end
    if workitem_code is not None:
        performed.PerformedWorkitemCodeSequence = Sequence([code_item(workitem_code)])
    if performer_name:
        human = Dataset()
        human.HumanPerformerName = performer_name
        performed.ActualHumanPerformersSequence = Sequence([human])
    outputs = []
    if output is not None:
        item = Dataset()
        item.TypeOfInstances = "DICOM"
        item.StudyInstanceUID = output.study_uid
        item.SeriesInstanceUID = output.series_uid
        ref = Dataset()
        ref.ReferencedSOPClassUID = output.sop_class_uid
        ref.ReferencedSOPInstanceUID = output.sop_instance_uid
        item.ReferencedSOPSequence = Sequence([ref])
        retrieval = Dataset()
        retrieval.RetrieveAETitle = output.retrieve_ae
        item.DICOMRetrievalSequence = Sequence([retrieval])
        outputs.append(item)
    performed.OutputInformationSequence = Sequence(outputs)
    ds.UnifiedProcedureStepPerformedProcedureSequence = Sequence([performed])
    return ds


@dataclass(frozen=True, slots=True)
class CancelRequest:
    """A UPS Cancel Requested event (N-EVENT-REPORT type 2) received from the TMS."""

    ups_uid: str
    requesting_ae: str
    reason_text: str
    reason_code: Code | None


def parse_cancel_request(ups_uid: str, info: Dataset | None) -> CancelRequest:
    """Read the Event Information of a UPS Cancel Requested report (all fields optional)."""
    info = info if info is not None else Dataset()
    return CancelRequest(
        ups_uid=ups_uid,
        requesting_ae=str(info.get("RequestingAE", "") or "").strip(),
        reason_text=str(info.get("ReasonForCancellation", "") or ""),
        reason_code=_first_code(info, "ProcedureStepDiscontinuationReasonCodeSequence"),
    )
