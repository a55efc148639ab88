"""RT Brachy Application Setup Delivery Instruction (SOP class ...34.10): build, read, continue.

What the TMS tells an afterloader for one session (PS3.3 C.8.8.30, reference ``dicom-interface.md`` §3.7):
the plan and fraction, and per application setup a Brachy Task: TREATMENT, or a CONTINUATION with the
Channel Delivery Continuation Sequence (per channel the Start/End Cumulative Time Weight still to deliver),
the channels already treated in the Omitted Channel Sequence, the Continuation Start/End Total Reference
Air Kerma and, for PDR, the Continuation Pulse Number (the pulse delivery resumes in).

:func:`plan_brachy_continuation` is the TMS side of an interrupted brachy fraction: from the partial RT Brachy
Treatment Records (Delivered / Specified Channel Total Time per channel) it works out what is left, in plan
weights, so the decay correction at the next session applies to the remaining dwells only.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import generate_uid

from simulators.dicom import codes
from simulators.dicom.instruction_values import attach_file_meta, instruction_tasks, int_value
from simulators.errors import PlanReadError
from simulators.plans.brachy_model import BrachyTask, ChannelWindow

OMISSION_ALREADY_TREATED = "ALREADY_TREATED"
DELIVERED_TOLERANCE = 1e-4  # delivered/specified above 1 - this counts as complete
_PATIENT_STUDY = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
)


@dataclass(frozen=True, slots=True)
class BrachyInstruction:
    """What a brachy delivery instruction says. ``beam_tasks`` is the name the TDD workflow reads."""

    sop_instance_uid: str
    plan_sop_class_uid: str
    plan_sop_instance_uid: str
    fraction_number: int
    fraction_group_number: int
    tasks: tuple[BrachyTask, ...]
    continuation_pulse: int | None = None

    @property
    def beam_tasks(self) -> tuple[BrachyTask, ...]:
        return self.tasks

    @property
    def omitted_beams(self) -> tuple[tuple[int, str], ...]:
        return ()


def _ds(value: float, decimals: int = 6) -> str:
    text = f"{value:.{decimals}f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def _setups(plan: Dataset) -> dict[int, Dataset]:
    return {
        int(s.ApplicationSetupNumber): s
        for s in plan.get("ApplicationSetupSequence") or []
        if "ApplicationSetupNumber" in s
    }


def default_tasks(plan: Dataset, fraction_number: int, group_number: int | None = None) -> list[BrachyTask]:
    """A TREATMENT task for every application setup of the fraction group (all setups without one)."""
    groups = list(plan.get("FractionGroupSequence") or [])
    group = groups[0] if groups else None
    if group_number is not None:
        group = next((g for g in groups if int(g.get("FractionGroupNumber", -1)) == group_number), group)
    number = int(group.get("FractionGroupNumber", 1)) if group is not None else 1
    refs = [
        int(r.ReferencedBrachyApplicationSetupNumber)
        for r in (group.get("ReferencedBrachyApplicationSetupSequence") or [] if group is not None else [])
        if "ReferencedBrachyApplicationSetupNumber" in r
    ]
    setups = refs or list(_setups(plan))
    return [
        BrachyTask(setup_number=s, fraction_number=fraction_number, fraction_group_number=number)
        for s in setups
    ]


def build_brachy_instruction(
    plan: Dataset,
    *,
    fraction_number: int,
    tasks: Sequence[BrachyTask] | None = None,
    fraction_group_number: int | None = None,
    sop_instance_uid: str | None = None,
    series_instance_uid: str | None = None,
    when: datetime | None = None,
    manufacturer: str = "rtsim",
    retrieve_ae: str = "",
    source: str = "RT Plan",
) -> Dataset:
    """An RT Brachy Application Setup Delivery Instruction for one session of ``plan`` (with file meta)."""
    if fraction_number < 1:
        raise ValueError(f"fraction_number must be >= 1, got {fraction_number}")
    if "StudyInstanceUID" not in plan:
        raise PlanReadError(
            f"{source}: Study Instance UID (0020,000D) missing; the instruction must share the study"
        )
    setups = _setups(plan)
    if not setups:
        raise PlanReadError(f"{source}: no Application Setup Sequence (300A,0230): not a brachy plan")
    tasks = list(tasks) if tasks is not None else default_tasks(plan, fraction_number, fraction_group_number)
    if not tasks:
        raise PlanReadError(f"{source}: no application setup to instruct")
    moment = when or datetime.now()
    ds = Dataset()
    ds.SpecificCharacterSet = plan.get("SpecificCharacterSet", "ISO_IR 100")
    ds.SOPClassUID = codes.RT_BRACHY_DELIVERY_INSTRUCTION_STORAGE
    ds.SOPInstanceUID = sop_instance_uid or generate_uid()
    ds.InstanceCreationDate = moment.strftime("%Y%m%d")
    ds.InstanceCreationTime = moment.strftime("%H%M%S")
    ds.ContentDate = moment.strftime("%Y%m%d")
    ds.ContentTime = moment.strftime("%H%M%S")
    for keyword in _PATIENT_STUDY:
        if keyword in plan:
            ds[keyword] = plan[keyword]
        else:
            setattr(ds, keyword, "")
    ds.Modality = "PLAN"
    ds.SeriesInstanceUID = series_instance_uid or generate_uid()
    ds.SeriesNumber = None
    ds.Manufacturer = manufacturer
    ds.ManufacturerModelName = "rtsim TMS"
    ds.DeviceSerialNumber = "RTSIM-TMS"
    ds.SoftwareVersions = "rtsim"
    ds.InstanceNumber = 1
    plan_ref = Dataset()
    plan_ref.ReferencedSOPClassUID = plan.get("SOPClassUID", codes.RT_PLAN_STORAGE)
    plan_ref.ReferencedSOPInstanceUID = plan.SOPInstanceUID
    ds.ReferencedRTPlanSequence = DicomSequence([plan_ref])
    series = Dataset()
    series.SeriesInstanceUID = plan.get("SeriesInstanceUID", "") or generate_uid()
    series.ReferencedSOPSequence = DicomSequence([plan_ref])
    if retrieve_ae:
        series.RetrieveAETitle = retrieve_ae
    ds.ReferencedSeriesSequence = DicomSequence([series])  # Common Instance Reference
    first = tasks[0]
    ds.ReferencedFractionGroupNumber = first.fraction_group_number
    ds.CurrentFractionNumber = first.fraction_number
    pulse = next((t.continuation_pulse for t in tasks if t.is_continuation and t.continuation_pulse), None)
    if pulse is not None:
        ds.ContinuationPulseNumber = pulse
    items = []
    omitted_setups = []
    for task in tasks:
        setup = setups.get(task.setup_number)
        if setup is None:
            raise PlanReadError(
                f"{source}: task for application setup {task.setup_number}, absent from the plan"
            )
        item = Dataset()
        item.TreatmentDeliveryType = task.delivery_type.upper()
        if task.is_continuation:
            start = task.start_total_reference_air_kerma or 0.0
            end = task.end_total_reference_air_kerma
            if end is None:
                end = float(setup.get("TotalReferenceAirKerma", 0.0) or 0.0)
            item.ContinuationStartTotalReferenceAirKerma = _ds(start, 4)
            item.ContinuationEndTotalReferenceAirKerma = _ds(end, 4)
        item.ReferencedBrachyApplicationSetupNumber = task.setup_number
        order = (
            list(task.channel_order)
            if task.channel_order
            else [int(c.ChannelNumber) for c in setup.ChannelSequence]
        )
        order_items = []
        for index, number in enumerate(order, start=1):
            entry = Dataset()
            entry.ReferencedChannelNumber = number
            entry.ChannelDeliveryOrderIndex = index
            order_items.append(entry)
        item.ChannelDeliveryOrderSequence = DicomSequence(order_items)
        if task.continuation:
            windows = []
            for number, window in sorted(task.continuation.items()):
                entry = Dataset()
                entry.ReferencedChannelNumber = number
                entry.StartCumulativeTimeWeight = _ds(window.start_weight)
                entry.EndCumulativeTimeWeight = _ds(window.end_weight)
                windows.append(entry)
            item.ChannelDeliveryContinuationSequence = DicomSequence(windows)
        items.append(item)
        if task.omitted_channels:
            omitted = Dataset()
            omitted.ReferencedBrachyApplicationSetupNumber = task.setup_number
            channels = []
            for number, reason in task.omitted_channels:
                entry = Dataset()
                entry.ReferencedChannelNumber = number
                entry.ReasonForChannelOmission = reason
                channels.append(entry)
            omitted.OmittedChannelSequence = DicomSequence(channels)
            omitted_setups.append(omitted)
    ds.BrachyTaskSequence = DicomSequence(items)
    if omitted_setups:
        ds.OmittedApplicationSetupSequence = DicomSequence(omitted_setups)
    return attach_file_meta(ds)


def _float(item: Dataset, keyword: str, tag: str, where: str) -> float | None:
    value = item.get(keyword)
    if value in (None, ""):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError) as error:
        raise PlanReadError(f"{where}: {keyword} {tag} {value!r} is not a number") from error
    if not math.isfinite(number):
        raise PlanReadError(f"{where}: {keyword} {tag} {value!r} is not a finite number")
    return number


def read_brachy_instruction(
    ds: Dataset, source: str = "RT Brachy Application Setup Delivery Instruction"
) -> BrachyInstruction:
    """Read a brachy delivery instruction into tasks (PlanReadError names the item and the attribute)."""
    where, task_items = instruction_tasks(
        ds,
        source,
        sop_class_uid=codes.RT_BRACHY_DELIVERY_INSTRUCTION_STORAGE,
        iod_name="RT Brachy Application Setup Delivery Instruction",
        task_keyword="BrachyTaskSequence",
        task_tag="(0074,1401)",
    )
    plans = ds.ReferencedRTPlanSequence
    fraction = int_value(ds, "CurrentFractionNumber", "(3008,0022)", where)
    group = int_value(ds, "ReferencedFractionGroupNumber", "(300C,0022)", where, required=False) or 1
    pulse = int_value(ds, "ContinuationPulseNumber", "(0074,1404)", where, required=False)
    omitted: dict[int, list[tuple[int, str]]] = {}
    for index, item in enumerate(ds.get("OmittedApplicationSetupSequence") or [], start=1):
        item_where = f"{where}: Omitted Application Setup Sequence (0074,140E) item {index}"
        setup = int_value(item, "ReferencedBrachyApplicationSetupNumber", "(300C,000C)", item_where)
        for channel_item in item.get("OmittedChannelSequence") or []:
            number = int_value(channel_item, "ReferencedChannelNumber", "(0074,1406)", item_where)
            reason = str(channel_item.get("ReasonForChannelOmission", "") or "")
            omitted.setdefault(setup, []).append((number, reason))  # type: ignore[arg-type]
    tasks = []
    for index, item in enumerate(task_items, start=1):
        item_where = f"{where}: Brachy Task Sequence (0074,1401) item {index}"
        delivery = str(item.get("TreatmentDeliveryType", "") or "").strip().upper()
        if delivery not in (codes.DELIVERY_TYPE_TREATMENT, codes.DELIVERY_TYPE_CONTINUATION):
            raise PlanReadError(
                f"{item_where}: Treatment Delivery Type (300A,00CE) {delivery!r} "
                "is not TREATMENT or CONTINUATION"
            )
        setup = int_value(item, "ReferencedBrachyApplicationSetupNumber", "(300C,000C)", item_where)
        order_items = sorted(
            item.get("ChannelDeliveryOrderSequence") or [],
            key=lambda e: int(e.get("ChannelDeliveryOrderIndex", 0) or 0),
        )
        order = tuple(
            int(int_value(e, "ReferencedChannelNumber", "(0074,1406)", item_where) or 0) for e in order_items
        )
        windows: dict[int, ChannelWindow] = {}
        for entry in item.get("ChannelDeliveryContinuationSequence") or []:
            number = int_value(entry, "ReferencedChannelNumber", "(0074,1406)", item_where)
            start = _float(entry, "StartCumulativeTimeWeight", "(0074,1407)", item_where)
            end = _float(entry, "EndCumulativeTimeWeight", "(0074,1408)", item_where)
            if start is None or end is None:
                raise PlanReadError(
                    f"{item_where}: channel {number}: Start and End Cumulative Time Weight "
                    "(0074,1407/1408) are required"
                )
            if not 0 <= start <= end:
                raise PlanReadError(
                    f"{item_where}: channel {number}: Start Cumulative Time Weight {start} > End {end}"
                )
            windows[int(number)] = ChannelWindow(start, end)  # type: ignore[arg-type]
        tasks.append(
            BrachyTask(
                setup_number=int(setup),  # type: ignore[arg-type]
                delivery_type=delivery,
                fraction_number=int(fraction),  # type: ignore[arg-type]
                fraction_group_number=group,
                channel_order=order or None,
                continuation=windows,
                omitted_channels=tuple(omitted.get(int(setup), ())),  # type: ignore[arg-type]
                continuation_pulse=pulse if delivery == codes.DELIVERY_TYPE_CONTINUATION else None,
                start_total_reference_air_kerma=_float(
                    item, "ContinuationStartTotalReferenceAirKerma", "(0074,1402)", item_where
                ),
                end_total_reference_air_kerma=_float(
                    item, "ContinuationEndTotalReferenceAirKerma", "(0074,1403)", item_where
                ),
            )
        )
    return BrachyInstruction(
        sop_instance_uid=str(ds.get("SOPInstanceUID", "") or ""),
        plan_sop_class_uid=str(plans[0].get("ReferencedSOPClassUID", "") or ""),
        plan_sop_instance_uid=str(plans[0].get("ReferencedSOPInstanceUID", "") or ""),
        fraction_number=int(fraction),  # type: ignore[arg-type]
        fraction_group_number=group,
        tasks=tuple(tasks),
        continuation_pulse=pulse,
    )


# --- the TMS's continuation ---------------------------------------------------------------------------


def delivered_fractions(records: Iterable[Dataset], fraction_number: int) -> dict[int, float]:
    """Per channel, the share of its specified time delivered (sum over records of delivered / specified)."""
    shares: dict[int, float] = {}
    for record in records:
        for setup in record.get("TreatmentSessionApplicationSetupSequence") or []:
            fraction = setup.get("CurrentFractionNumber")
            if fraction not in (None, "") and int(fraction) != fraction_number:
                continue
            for channel in setup.get("RecordedChannelSequence") or []:
                specified = float(channel.get("SpecifiedChannelTotalTime") or 0.0)
                delivered = float(channel.get("DeliveredChannelTotalTime") or 0.0)
                if specified <= 0 or "ChannelNumber" not in channel:
                    continue
                number = int(channel.ChannelNumber)
                shares[number] = shares.get(number, 0.0) + delivered / specified
    return shares


def delivered_seconds(records: Iterable[Dataset]) -> float:
    """Dwell time delivered over the records (sum of Delivered Channel Total Time)."""
    return sum(
        float(channel.get("DeliveredChannelTotalTime") or 0.0)
        for record in records
        for setup in record.get("TreatmentSessionApplicationSetupSequence") or []
        for channel in setup.get("RecordedChannelSequence") or []
    )


def plan_brachy_continuation(
    plan: Dataset, original: Sequence[BrachyTask], records: Sequence[Dataset], *, fraction_number: int
) -> list[BrachyTask]:
    """The CONTINUATION tasks that finish ``fraction_number`` (empty when every channel is delivered).

    HDR: a channel delivered in full is omitted (ALREADY_TREATED), a partly delivered one continues from
    the weight ``share x Final Cumulative Time Weight``, an untouched one is delivered whole. PDR: the
    share counts pulses; delivery resumes in the first pulse some channel has not completed
    (Continuation Pulse Number), whose completed channels are omitted for that pulse.
    """
    shares = delivered_fractions(records, fraction_number)
    setups = _setups(plan)
    pdr = str(plan.get("BrachyTreatmentType", "")).upper() == "PDR"
    tasks = []
    for task in original:
        setup = setups.get(task.setup_number)
        if setup is None:
            continue
        channels = {int(c.ChannelNumber): c for c in setup.ChannelSequence}
        pulses = {n: max(int(c.get("NumberOfPulses") or 1), 1) if pdr else 1 for n, c in channels.items()}
        done_pulses = {n: shares.get(n, 0.0) * pulses[n] for n in channels}
        if all(done_pulses[n] >= pulses[n] - DELIVERED_TOLERANCE for n in channels):
            continue  # every channel of this setup is delivered
        pulse = min(math.floor(done_pulses[n] + DELIVERED_TOLERANCE) for n in channels) + 1
        windows, omitted = {}, []
        planned_s, delivered_s = 0.0, 0.0
        for number, channel in channels.items():
            final = float(channel.get("FinalCumulativeTimeWeight") or 0.0) or float(
                channel.BrachyControlPointSequence[-1].CumulativeTimeWeight
            )
            total = float(channel.get("ChannelTotalTime") or 0.0) * pulses[number]
            planned_s += total
            delivered_s += total * min(shares.get(number, 0.0), 1.0)
            in_pulse = done_pulses[number] - (pulse - 1)  # share of the resumed pulse already delivered
            if in_pulse >= 1.0 - DELIVERED_TOLERANCE:
                omitted.append((number, OMISSION_ALREADY_TREATED))
            elif in_pulse > DELIVERED_TOLERANCE:
                windows[number] = ChannelWindow(round(in_pulse * final, 6), final)
        trak = float(setup.get("TotalReferenceAirKerma") or 0.0)
        tasks.append(
            BrachyTask(
                setup_number=task.setup_number,
                delivery_type=codes.DELIVERY_TYPE_CONTINUATION,
                fraction_number=fraction_number,
                fraction_group_number=task.fraction_group_number,
                channel_order=task.channel_order,
                continuation=windows,
                omitted_channels=tuple(omitted),
                continuation_pulse=pulse if pdr else None,
                start_total_reference_air_kerma=trak * delivered_s / planned_s if planned_s > 0 else 0.0,
                end_total_reference_air_kerma=trak,
            )
        )
    return tasks
