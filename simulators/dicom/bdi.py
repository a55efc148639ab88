"""RT Beams Delivery Instruction (SOP class 1.2.840.10008.5.1.4.34.7): build one from an RT Plan, read one.

The BDI tells the device, per beam, what to do in this session (PS3.3 C.8.8.29): TREAT the beam as a new
TREATMENT, or a CONTINUATION from a start meterset to an end meterset, for which fraction. Beams already
delivered in an interrupted fraction go into the Omitted Beam Task Sequence (``ALREADY_TREATED``).
Modules written: Patient, General Study, General Series (Modality PLAN, as the IHE-RO data),
General Equipment, RT Beams Delivery Instruction, SOP Common.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Sequence as SequenceOf
from dataclasses import dataclass
from datetime import datetime

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from simulators.dicom import codes
from simulators.dicom.instruction_values import attach_file_meta, instruction_tasks, int_value
from simulators.errors import PlanReadError
from simulators.plans.model import BeamTask

_PATIENT_STUDY = (
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
    "StudyDescription",
)
_TYPE2_FD = (
    "TableTopVerticalAdjustedPosition",
    "TableTopLongitudinalAdjustedPosition",
    "TableTopLateralAdjustedPosition",
    "PatientSupportAdjustedAngle",
    "TableTopEccentricAdjustedAngle",
    "TableTopPitchAdjustedAngle",
    "TableTopRollAdjustedAngle",
)
_TYPE2_DS = (
    "TableTopVerticalSetupDisplacement",
    "TableTopLongitudinalSetupDisplacement",
    "TableTopLateralSetupDisplacement",
)


@dataclass(frozen=True, slots=True)
class DeliveryInstruction:
    """What a BDI says: which plan, the beam tasks in order, and the beams left out (with the reason)."""

    sop_instance_uid: str
    plan_sop_class_uid: str
    plan_sop_instance_uid: str
    beam_tasks: tuple[BeamTask, ...]
    omitted_beams: tuple[tuple[int, str], ...]  # (beam number, Reason for Omission)
    primary_dosimeter_unit: str  # from the CONTINUATION tasks, "" if none says

    @property
    def fraction_number(self) -> int:
        """The fraction this instruction delivers (that of its first beam task)."""
        return self.beam_tasks[0].fraction_number if self.beam_tasks else 0


def _fmt(value: float) -> float:
    """Meterset values as FD, rounded to the DS precision records use (5 decimals)."""
    return round(float(value), 5)


def _beam_items(plan: Dataset) -> dict[int, Dataset]:
    return {int(b.BeamNumber): b for b in plan.get("BeamSequence", []) if "BeamNumber" in b}


def fraction_group(plan: Dataset, number: int | None = None, *, source: str = "RT Plan") -> Dataset:
    """The Fraction Group Sequence item with this number (the first one if None)."""
    groups = plan.get("FractionGroupSequence")
    if not groups:
        raise PlanReadError(f"{source}: Fraction Group Sequence (300A,0070) is missing or empty")
    if number is None:
        return groups[0]
    for group in groups:
        if int(group.get("FractionGroupNumber", -1)) == number:
            return group
    raise PlanReadError(f"{source}: no Fraction Group Number (300A,0071) {number} in the plan")


def beam_metersets(
    plan: Dataset, group_number: int | None = None, *, source: str = "RT Plan"
) -> dict[int, float]:
    """Beam number -> Beam Meterset (300A,0086) of a fraction group, in fraction group order."""
    group = fraction_group(plan, group_number, source=source)
    out: dict[int, float] = {}
    for index, ref in enumerate(group.get("ReferencedBeamSequence", [])):
        if "ReferencedBeamNumber" not in ref:
            raise PlanReadError(
                f"{source}: Referenced Beam Sequence item {index + 1}: "
                "Referenced Beam Number (300C,0006) missing"
            )
        value = ref.get("BeamMeterset")
        out[int(ref.ReferencedBeamNumber)] = float(value) if value not in (None, "") else 0.0
    return out


def treatment_beams(plan: Dataset, group_number: int | None = None, *, source: str = "RT Plan") -> list[int]:
    """The beams of a fraction group that deliver dose (SETUP beams and zero-meterset beams left out)."""
    items = _beam_items(plan)
    beams = []
    for number, meterset in beam_metersets(plan, group_number, source=source).items():
        item = items.get(number)
        if item is None:
            raise PlanReadError(
                f"{source}: fraction group references beam {number}, absent from Beam Sequence"
            )
        if str(item.get("TreatmentDeliveryType", "TREATMENT")).upper() == "SETUP" or meterset <= 0:
            continue
        beams.append(number)
    return beams


def build_bdi(
    plan: Dataset,
    *,
    fraction_number: int,
    beam_tasks: SequenceOf[BeamTask] | None = None,
    omitted: Iterable[tuple[int, str]] = (),
    fraction_group_number: int | None = None,
    sop_instance_uid: str | None = None,
    series_instance_uid: str | None = None,
    when: datetime | None = None,
    manufacturer: str = "rtsim",
    source: str = "RT Plan",
) -> Dataset:
    """An RT Beams Delivery Instruction for one session of ``plan`` (with file meta, ready to send).

    Without ``beam_tasks``: a TREAT/TREATMENT task for every treatment beam of the fraction group.
    """
    if fraction_number < 1:
        raise ValueError(f"fraction_number must be >= 1, got {fraction_number}")
    group = fraction_group(plan, fraction_group_number, source=source)
    group_number = int(group.get("FractionGroupNumber", fraction_group_number or 1))
    items = _beam_items(plan)
    if beam_tasks is None:
        beam_tasks = [
            BeamTask(beam_number=n, fraction_number=fraction_number, fraction_group_number=group_number)
            for n in treatment_beams(plan, group_number, source=source)
        ]
    if not beam_tasks:
        raise PlanReadError(f"{source}: fraction group {group_number} has no treatment beam to instruct")
    moment = when or datetime.now()
    ds = Dataset()
    ds.SpecificCharacterSet = plan.get("SpecificCharacterSet", "ISO_IR 100")
    ds.SOPClassUID = codes.RT_BEAMS_DELIVERY_INSTRUCTION_STORAGE
    ds.SOPInstanceUID = sop_instance_uid or generate_uid()
    ds.InstanceCreationDate = moment.strftime("%Y%m%d")
    ds.InstanceCreationTime = moment.strftime("%H%M%S")
    for keyword in _PATIENT_STUDY:
        if keyword in plan:
            ds[keyword] = plan[keyword]
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime"):
        if keyword not in ds:
            setattr(ds, keyword, "")
    if "ReferringPhysicianName" not in ds:
        ds.ReferringPhysicianName = ""
    if "StudyID" not in ds:
        ds.StudyID = ""
    if "AccessionNumber" not in ds:
        ds.AccessionNumber = ""
    if "StudyInstanceUID" not in ds:
        raise PlanReadError(f"{source}: Study Instance UID (0020,000D) missing; the BDI must share the study")
    ds.Modality = "PLAN"
    ds.SeriesInstanceUID = series_instance_uid or generate_uid()
    ds.SeriesNumber = None
    ds.SeriesDate = moment.strftime("%Y%m%d")
    ds.SeriesTime = moment.strftime("%H%M%S")
    ds.Manufacturer = manufacturer
    plan_ref = Dataset()
    plan_ref.ReferencedSOPClassUID = plan.get("SOPClassUID", codes.RT_PLAN_STORAGE)
    plan_ref.ReferencedSOPInstanceUID = plan.SOPInstanceUID
    ds.ReferencedRTPlanSequence = Sequence([plan_ref])
    task_items = []
    for order, task in enumerate(beam_tasks, start=1):
        beam = items.get(task.beam_number)
        if beam is None:
            raise PlanReadError(f"{source}: beam task for beam {task.beam_number}, absent from Beam Sequence")
        item = Dataset()
        item.BeamTaskType = codes.BEAM_TASK_TREAT
        item.TreatmentDeliveryType = task.delivery_type
        if task.delivery_type == codes.DELIVERY_TYPE_CONTINUATION:
            if task.start_meterset_mu is None or task.end_meterset_mu is None:
                raise ValueError(f"beam {task.beam_number}: CONTINUATION needs start and end metersets")
            item.PrimaryDosimeterUnit = str(beam.get("PrimaryDosimeterUnit", "MU") or "MU")
            item.ContinuationStartMeterset = _fmt(task.start_meterset_mu)
            item.ContinuationEndMeterset = _fmt(task.end_meterset_mu)
        item.CurrentFractionNumber = task.fraction_number
        item.ReferencedFractionGroupNumber = task.fraction_group_number
        item.ReferencedBeamNumber = task.beam_number
        item.BeamOrderIndex = order
        for keyword in _TYPE2_FD:
            setattr(item, keyword, None)
        for keyword in _TYPE2_DS:
            setattr(item, keyword, None)
        task_items.append(item)
    ds.BeamTaskSequence = Sequence(task_items)
    omitted_items = []
    for beam_number, reason in omitted:
        item = Dataset()
        item.ReferencedBeamNumber = beam_number
        item.ReasonForOmission = reason
        omitted_items.append(item)
    if omitted_items:
        ds.OmittedBeamTaskSequence = Sequence(omitted_items)
    return attach_file_meta(ds)


def _float(item: Dataset, keyword: str, tag: str, where: str) -> float:
    value = item.get(keyword)
    if value in (None, ""):
        raise PlanReadError(f"{where}: {keyword} {tag} is required for a CONTINUATION")
    try:
        return float(value)
    except (TypeError, ValueError) as error:
        raise PlanReadError(f"{where}: {keyword} {tag} {value!r} is not a number") from error


def read_bdi(ds: Dataset, source: str = "RT Beams Delivery Instruction") -> DeliveryInstruction:
    """Read a BDI into beam tasks (PlanReadError names the item and the attribute if unusable)."""
    where, tasks_seq = instruction_tasks(
        ds,
        source,
        sop_class_uid=codes.RT_BEAMS_DELIVERY_INSTRUCTION_STORAGE,
        iod_name="RT Beams Delivery Instruction Storage",
        task_keyword="BeamTaskSequence",
        task_tag="(0074,1020)",
    )
    plans = ds.ReferencedRTPlanSequence
    tasks = []
    units = set()
    for index, item in enumerate(tasks_seq, start=1):
        item_where = f"{where}: Beam Task Sequence (0074,1020) item {index}"
        beam = int_value(item, "ReferencedBeamNumber", "(300C,0006)", item_where)
        task_type = str(item.get("BeamTaskType", "") or "").strip()
        if task_type not in (codes.BEAM_TASK_TREAT, codes.BEAM_TASK_VERIFY, codes.BEAM_TASK_VERIFY_AND_TREAT):
            raise PlanReadError(f"{item_where}: Beam Task Type (0074,1022) {task_type!r} is not TREAT/VERIFY")
        delivery = str(item.get("TreatmentDeliveryType", "") or "").strip()
        if delivery not in (codes.DELIVERY_TYPE_TREATMENT, codes.DELIVERY_TYPE_CONTINUATION):
            raise PlanReadError(
                f"{item_where}: Treatment Delivery Type (300A,00CE) {delivery!r} "
                "is not TREATMENT or CONTINUATION"
            )
        fraction = int_value(item, "CurrentFractionNumber", "(3008,0022)", item_where)
        group = int_value(item, "ReferencedFractionGroupNumber", "(300C,0022)", item_where, required=False)
        start = end = None
        if delivery == codes.DELIVERY_TYPE_CONTINUATION:
            unit = str(item.get("PrimaryDosimeterUnit", "") or "").strip()
            if not unit:
                raise PlanReadError(
                    f"{item_where}: Primary Dosimeter Unit (300A,00B3) is required for a CONTINUATION"
                )
            units.add(unit)
            start = _float(item, "ContinuationStartMeterset", "(0074,0120)", item_where)
            end = _float(item, "ContinuationEndMeterset", "(0074,0121)", item_where)
            if not 0 <= start <= end:
                raise PlanReadError(
                    f"{item_where}: Continuation Start Meterset {start} must be within 0..End Meterset {end}"
                )
        tasks.append(
            BeamTask(
                beam_number=beam,  # type: ignore[arg-type]
                delivery_type=delivery,
                start_meterset_mu=start,
                end_meterset_mu=end,
                fraction_number=fraction,  # type: ignore[arg-type]
                fraction_group_number=group if group is not None else 1,
            )
        )
    omitted = []
    for index, item in enumerate(ds.get("OmittedBeamTaskSequence") or [], start=1):
        item_where = f"{where}: Omitted Beam Task Sequence (300C,0111) item {index}"
        beam = int_value(item, "ReferencedBeamNumber", "(300C,0006)", item_where)
        omitted.append((beam, str(item.get("ReasonForOmission", "") or "")))
    return DeliveryInstruction(
        sop_instance_uid=str(ds.get("SOPInstanceUID", "") or ""),
        plan_sop_class_uid=str(plans[0].get("ReferencedSOPClassUID", "") or ""),
        plan_sop_instance_uid=str(plans[0].get("ReferencedSOPInstanceUID", "") or ""),
        beam_tasks=tuple(tasks),
        omitted_beams=tuple(omitted),  # type: ignore[arg-type]
        primary_dosimeter_unit=units.pop()
        if len(units) == 1
        else ("" if not units else ",".join(sorted(units))),
    )


def parse_bdi(ds: Dataset, source: str = "RT Beams Delivery Instruction") -> tuple[BeamTask, ...]:
    """The beam tasks of a BDI, in order."""
    return read_bdi(ds, source).beam_tasks
