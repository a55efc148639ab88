"""DeliveryResult -> DICOM RT Brachy Treatment Record (one per session), and the afterloader's summary fields.

What the record says, and where each value comes from (PS3.3 A.30, C.8.8.22; reference
``dicom-interface.md`` §3.5):

* Patient, General Study, RT Series, General Equipment, RT General Treatment Record, RT Treatment Machine
  Record as the beams record (:mod:`simulators.records.beams_record`).
* Recorded Source Sequence: the **installed** source (model file): serial number, isotope, half-life, its
  certified Reference Air Kerma Rate at its calibration date/time.
* Treatment Session Application Setup Sequence: one item per application setup with a channel administered
  in this session, with Current Fraction Number, Treatment Delivery Type, Termination Status/Code,
  Verification Status, Application Setup Check (FAILED when the check cable found an obstruction).
* Recorded Channel Sequence, per channel administered (the source left the safe for it; a channel whose
  check cable run failed is left out, and a session where no source left the safe has no record):
  Specified Channel Total Time = the decay-corrected time of the whole channel for the fraction (all pulses
  for PDR); Delivered Channel Total Time = the dwell time delivered in **this** session, so the records of
  one fraction (treatment + continuations) add up to the specified time. Safe Position Exit = the source
  leaving the safe (after the check cable run), Safe Position Return = the source back in the safe (after a
  stop: the retraction at source speed, plus the emergency retraction time when the source was stuck).
  PDR: Specified/Delivered Number of Pulses and Pulse Repetition Interval, and the delivered control points
  per pulse in the Pulse Specific Brachy Control Point Delivered Sequence.
* Delivered control points: every plan control point reached (synthetic safe/check-cable points are left
  out), plus the point where delivery stopped, each with its time and actual relative position (the IOD
  has no Cumulative Time Weight there: what a channel delivered is its Delivered Channel Total Time).
* The decay correction applied (``S_plan / S_installed(treatment time)``) is written in a private block
  (creator ``RTSIM 1.0``: (0011,1001) decay factor, (0011,1002) installed RAKR at treatment time in µGy/h)
  and in the summary (:func:`brachy_summary_fields`).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import RTBrachyTreatmentRecordStorage

from machine_models.decay import strength_at
from machine_models.schema import MachineModel
from simulators.core import events as ev
from simulators.core.program import DeliveryProgram
from simulators.core.results import DeliveryResult, TerminationStatus, UnitResult
from simulators.devices.afterloader import (
    CHECK_CABLE,
    FIRST_PLAN_CP,
    SOURCE_AXIS,
    TRANSIT,
    PlannedUnit,
    corrected_cumulative_time_s,
    decay_factor,
    planned_units,
)
from simulators.errors import RtsimError
from simulators.plans.brachy_model import BrachyPlan, BrachyTask
from simulators.records.common import (
    dicom_date_time,
    file_meta_for,
    mark_written_encoding,
    patient_and_study,
    plan_and_record_references,
    series_and_equipment,
)
from simulators.records.decimal_strings import format_ds
from simulators.records.element_encoding import ElementKey, encode_item_parts, raw_sequence_element
from simulators.records.uids import RTSIM_UID_ROOT, UidSource

TIME_DECIMALS = 3
_CP_KEYS = {
    keyword: ElementKey(keyword)
    for keyword in (
        "BrachyControlPointDeliveredSequence",
        "BrachyPulseControlPointDeliveredSequence",
        "TreatmentControlPointDate",
        "TreatmentControlPointTime",
        "ControlPointRelativePosition",
        "ReferencedControlPointIndex",
    )
}
POSITION_DECIMALS = 2
PRIVATE_CREATOR = "RTSIM 1.0"
PRIVATE_GROUP = 0x0011
#: FaultInjected names whose ``params["retraction_s"]`` adds to the time the source took back to the safe
LATE_RETURN_FAULTS = ("source_stuck", "power_loss")
OBSTRUCTION_CODES = ("OBSTRUCTION", "CHANNEL_LENGTH")


@dataclass
class _ChannelRun:
    """What happened in one channel over the session's pulses."""

    planned: list[PlannedUnit] = field(default_factory=list)
    units: list[UnitResult] = field(default_factory=list)
    programs: list = field(default_factory=list)


def build_brachy_treatment_record(
    plan: BrachyPlan,
    result: DeliveryResult,
    machine: MachineModel,
    *,
    treatment_machine_name: str,
    tasks: Sequence[BrachyTask] | None = None,
    program: DeliveryProgram | None = None,
    operator_name: str = "",
    referenced_record_uids: Sequence[str] = (),
    instance_number: int = 1,
    verification_status: str = "VERIFIED",
    uid_seed: int | str | None = None,
    uid_prefix: str = RTSIM_UID_ROOT,
) -> Dataset:
    """The RT Brachy Treatment Record of one session (with File Meta, ready to save or send)."""
    al = machine.afterloader
    if al is None:
        raise RtsimError(f"machine {machine.model_id}: not an afterloader")
    source_label = plan.identity.source or "plan"
    planned = planned_units(plan, tasks)
    if len(planned) != len(result.units):
        raise RtsimError(
            f"{source_label}: the result has {len(result.units)} units, the session planned {len(planned)}"
        )
    factor = decay_factor(plan, machine, result.session_start)
    runs: dict[int, _ChannelRun] = {}
    for index, (unit_plan, unit) in enumerate(zip(planned, result.units, strict=True)):
        if unit.number != unit_plan.channel.number:
            raise RtsimError(
                f"{source_label}: result unit {unit.number} is not channel {unit_plan.channel.number}"
            )
        run = runs.setdefault(unit.number, _ChannelRun())
        run.planned.append(unit_plan)
        run.units.append(unit)
        run.programs.append(program.units[index] if program is not None else None)
    administered = {n: r for n, r in runs.items() if any(source_left_safe(u) for u in r.units)}
    if not administered:
        raise RtsimError(
            f"{source_label}: no channel was administered in this session "
            f"(status {result.termination_status}); there is nothing to record"
        )
    retraction_extra_s = _late_return_s(result)
    uids = UidSource(uid_prefix, uid_seed, (plan.identity.sop_instance_uid, result.session_start.isoformat()))
    tasks_by_setup = {t.setup_number: t for t in (tasks or ())}
    setup_items = []
    last_time_s = 0.0
    for setup in plan.setups:
        channel_items = []
        setup_units: list[UnitResult] = []
        for channel in setup.channels:
            setup_units += runs[channel.number].units if channel.number in runs else []
            run = administered.get(channel.number)
            if run is None:
                continue
            item, end_s = _channel_item(plan, run, machine, factor, result, retraction_extra_s)
            channel_items.append(item)
            last_time_s = max(last_time_s, end_s)
        if not channel_items:
            continue
        task = tasks_by_setup.get(setup.number, BrachyTask(setup_number=setup.number))
        setup_items.append(_setup_item(setup, task, channel_items, setup_units, result, verification_status))

    ds = Dataset()
    patient_and_study(ds, plan.identity.patient)
    ended = result.session_start + timedelta(seconds=last_time_s)
    fractions = sorted({t.fraction_number for t in tasks or ()}) or [1]
    series_and_equipment(
        ds,
        machine,
        series_instance_uid=uids.next("series"),
        description=f"rtsim brachy record F{','.join(str(f) for f in fractions)}",
        operator_name=operator_name,
        station_name=treatment_machine_name,
    )
    ds.InstanceNumber = instance_number
    ds.TreatmentDate, ds.TreatmentTime = dicom_date_time(ended)
    plan_and_record_references(ds, plan.identity, RTBrachyTreatmentRecordStorage, referenced_record_uids)
    if plan.patient_position:
        setup = Dataset()
        setup.PatientSetupNumber = 1
        setup.PatientPosition = plan.patient_position
        ds.PatientSetupSequence = DicomSequence([setup])
    machine_item = Dataset()
    machine_item.TreatmentMachineName = treatment_machine_name
    machine_item.Manufacturer = machine.manufacturer
    machine_item.InstitutionName = ""
    machine_item.ManufacturerModelName = machine.model_name
    machine_item.DeviceSerialNumber = f"RTSIM-{machine.model_id}"[:64]
    ds.TreatmentMachineSequence = DicomSequence([machine_item])
    group_number = next(iter({t.fraction_group_number for t in tasks or ()}), plan.fraction_groups[0].number)
    group = next((g for g in plan.fraction_groups if g.number == group_number), plan.fraction_groups[0])
    ds.ReferencedFractionGroupNumber = group.number
    ds.NumberOfFractionsPlanned = group.fractions_planned or None
    ds.BrachyTreatmentTechnique = plan.technique or "INTRACAVITARY"
    ds.BrachyTreatmentType = plan.treatment_type or "HDR"
    ds.RecordedSourceSequence = DicomSequence([_source_item(plan, machine)])
    ds.TreatmentSessionApplicationSetupSequence = DicomSequence(setup_items)
    block = ds.private_block(PRIVATE_GROUP, PRIVATE_CREATOR, create=True)
    block.add_new(0x01, "DS", format_ds(factor, 6))
    now_strength = strength_at(
        al.source.reference_air_kerma_rate_ugy_per_h,
        al.source.calibration_datetime,
        al.source.half_life_days,
        result.session_start,
    )
    block.add_new(0x02, "DS", format_ds(now_strength, 3))
    ds.SOPClassUID = RTBrachyTreatmentRecordStorage
    ds.SOPInstanceUID = uids.next("record")
    ds.InstanceCreationDate, ds.InstanceCreationTime = dicom_date_time(ended)
    if any(
        not str(ds.get(k, "")).isascii() for k in ("PatientName", "OperatorsName", "ReferringPhysicianName")
    ):
        ds.SpecificCharacterSet = "ISO_IR 192"
    ds.file_meta = file_meta_for(ds)
    mark_written_encoding(ds)
    return ds


def source_left_safe(unit: UnitResult) -> bool:
    """True when the source reached a plan control point of the unit (left the safe)."""
    return any(cp.plan_cp_index >= 0 for cp in unit.control_points)


# --- pieces -------------------------------------------------------------------------------------------


def _late_return_s(result: DeliveryResult) -> float:
    """Extra seconds before the source was back in the safe (stuck source, battery retraction)."""
    extra = 0.0
    for event in result.events:
        if isinstance(event, ev.FaultInjected) and event.name in LATE_RETURN_FAULTS:
            extra += float(event.params.get("retraction_s", 0.0))
    return extra


def _source_item(plan: BrachyPlan, machine: MachineModel) -> Dataset:
    al = machine.afterloader
    assert al is not None
    installed = al.source
    used = sorted({c.source_number for c in plan.channels})
    item = Dataset()
    item.SourceNumber = used[0] if used else 1
    item.SourceType = installed.source_type
    item.SourceManufacturer = installed.manufacturer
    item.SourceSerialNumber = installed.serial_number
    item.SourceIsotopeName = installed.isotope
    item.SourceIsotopeHalfLife = format_ds(installed.half_life_days, 4)
    item.ReferenceAirKermaRate = format_ds(installed.reference_air_kerma_rate_ugy_per_h, 3)
    item.SourceStrengthReferenceDate = installed.calibration_datetime.strftime("%Y%m%d")
    item.SourceStrengthReferenceTime = installed.calibration_datetime.strftime("%H%M%S")
    return item


def _setup_item(setup, task: BrachyTask, channel_items, units, result, verification_status: str) -> Dataset:
    item = Dataset()
    item.ApplicationSetupType = setup.setup_type or "FLETCHER_SUIT"
    item.ReferencedBrachyApplicationSetupNumber = setup.number
    if setup.name:
        item.ApplicationSetupName = setup.name[:64]
    stopped = [u for u in units if u.termination_status is not TerminationStatus.NORMAL]
    code = next((u.termination_code for u in stopped if u.termination_code), result.termination_code)
    item.ApplicationSetupCheck = "FAILED" if code in OBSTRUCTION_CODES else "PASSED"
    item.TotalReferenceAirKerma = format_ds(setup.total_reference_air_kerma or 0.0, 3)
    item.CurrentFractionNumber = task.fraction_number
    item.TreatmentDeliveryType = task.delivery_type.upper()
    status = stopped[0].termination_status if stopped else TerminationStatus.NORMAL
    item.TreatmentTerminationStatus = str(status)
    if code and status is not TerminationStatus.NORMAL:
        item.TreatmentTerminationCode = code[:16]
    item.TreatmentVerificationStatus = verification_status
    item.RecordedChannelSequence = DicomSequence(channel_items)
    return item


def _channel_item(
    plan: BrachyPlan,
    run: _ChannelRun,
    machine: MachineModel,
    factor: float,
    result: DeliveryResult,
    retraction_extra_s: float,
) -> tuple[Dataset, float]:
    al = machine.afterloader
    assert al is not None
    channel = run.planned[0].channel
    cumulative = corrected_cumulative_time_s(channel, factor, al.dwell_time_resolution_s)
    pdr = plan.treatment_type == "PDR"
    item = Dataset()
    item.ChannelNumber = channel.number
    item.ChannelLength = format_ds(channel.length_mm, POSITION_DECIMALS) if channel.length_mm else None
    specified = float(cumulative[-1]) * (channel.pulses if pdr else 1)
    delivered = sum(u.delivered_meterset for u in run.units)
    item.SpecifiedChannelTotalTime = format_ds(specified, TIME_DECIMALS)
    item.DeliveredChannelTotalTime = format_ds(delivered, TIME_DECIMALS)
    item.SourceMovementType = channel.source_movement_type or "STEPWISE"
    if pdr:
        completed = sum(
            1
            for unit_plan, unit in zip(run.planned, run.units, strict=True)
            if unit.delivered and unit.termination_status is TerminationStatus.NORMAL
        )
        item.SpecifiedNumberOfPulses = channel.pulses
        item.DeliveredNumberOfPulses = completed
        interval = format_ds(channel.pulse_repetition_interval_s or 0.0, TIME_DECIMALS)
        item.SpecifiedPulseRepetitionInterval = interval
        item.DeliveredPulseRepetitionInterval = _delivered_interval(run) or interval
    if channel.source_applicator_number is not None:
        applicator = Dataset()
        applicator.ReferencedSourceApplicatorNumber = channel.source_applicator_number
        applicator.SourceApplicatorID = channel.source_applicator_id or f"CH{channel.number}"
        applicator.SourceApplicatorType = channel.source_applicator_type or "FLEXIBLE"
        applicator.SourceApplicatorLength = format_ds(
            channel.source_applicator_length_mm or channel.length_mm or 0.0, POSITION_DECIMALS
        )
        applicator.SourceApplicatorStepSize = format_ds(channel.step_size_mm or 0.0, POSITION_DECIMALS)
        item.RecordedSourceApplicatorSequence = DicomSequence([applicator])
    item.TransferTubeNumber = channel.transfer_tube_number
    if channel.transfer_tube_number is not None and channel.transfer_tube_length_mm is not None:
        item.TransferTubeLength = format_ds(channel.transfer_tube_length_mm, POSITION_DECIMALS)
    item.ReferencedSourceNumber = channel.source_number
    exit_s, return_s = _safe_times(run, al.source_speed_mm_per_s, al.safe_to_channel_mm, retraction_extra_s)
    start = result.session_start
    _put_safe_times(item, start, exit_s, return_s)
    per_pulse = []
    for unit_plan, unit in zip(run.planned, run.units, strict=True):
        if source_left_safe(unit):
            per_pulse.append((unit_plan, unit, _cp_items(unit_plan, unit, start)))
    first_items = per_pulse[0][2] if per_pulse else []
    item.NumberOfControlPoints = len(first_items)
    _set_encoded_sequence(item, "BrachyControlPointDeliveredSequence", first_items)
    if pdr:
        pulses = []
        for unit_plan, unit, cp_items in per_pulse:
            pulse = Dataset()
            pulse.PulseNumber = unit_plan.pulse
            one = _ChannelRun([unit_plan], [unit], [None])
            left, back = _safe_times(one, al.source_speed_mm_per_s, al.safe_to_channel_mm, retraction_extra_s)
            _put_safe_times(pulse, start, left, back)
            _set_encoded_sequence(pulse, "BrachyPulseControlPointDeliveredSequence", cp_items)
            pulses.append(pulse)
        item.PulseSpecificBrachyControlPointDeliveredSequence = DicomSequence(pulses)
    end_s = max([return_s or 0.0] + [cp.time_s for u in run.units for cp in u.control_points])
    return item, end_s


def _set_encoded_sequence(item: Dataset, keyword: str, encoded_items: list[bytes]) -> None:
    key = _CP_KEYS[keyword]
    item[key.tag] = raw_sequence_element(key, encoded_items)


def _put_safe_times(item: Dataset, start: datetime, exit_s: float | None, return_s: float | None) -> None:
    """Safe Position Exit/Return Date/Time (left out where it did not happen)."""
    for (date_kw, time_kw), seconds in (
        (("SafePositionExitDate", "SafePositionExitTime"), exit_s),
        (("SafePositionReturnDate", "SafePositionReturnTime"), return_s),
    ):
        if seconds is not None:
            day, clock = dicom_date_time(start + timedelta(seconds=seconds))
            setattr(item, date_kw, day)
            setattr(item, time_kw, clock)


def _delivered_interval(run: _ChannelRun) -> str | None:
    starts = [
        next(cp.time_s for cp in u.control_points if cp.plan_cp_index >= 0)
        for u in run.units
        if source_left_safe(u)
    ]
    if len(starts) < 2:
        return None
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    return format_ds(sum(gaps) / len(gaps), TIME_DECIMALS)


def _safe_times(
    run: _ChannelRun, speed_mm_per_s: float, safe_to_channel_mm: float, extra_s: float
) -> tuple[float | None, float | None]:
    """(source left the safe, source back in the safe) in session seconds, None where it did not happen."""
    exit_s = return_s = None
    for unit in run.units:
        points = unit.control_points
        left = [cp.time_s for cp in points if cp.plan_cp_index >= 0]
        out_start = _time_of_synthetic(unit, FIRST_PLAN_CP - 1)
        if out_start is None and not left:
            continue  # the source never left the safe (stopped in the check cable run)
        if exit_s is None:
            exit_s = out_start if out_start is not None else left[0]
        if unit.termination_status is TerminationStatus.NORMAL:
            return_s = unit.end_time_s
        else:
            last = points[-1]
            position = float(last.positions.get(SOURCE_AXIS, 0.0))
            return_s = unit.end_time_s + (position + safe_to_channel_mm) / speed_mm_per_s + extra_s
    return exit_s, return_s


def _time_of_synthetic(unit: UnitResult, local_index: int) -> float | None:
    """When the unit reached its ``local_index``-th control point if that was a synthetic one."""
    synthetic = [cp for cp in unit.control_points if cp.plan_cp_index < 0]
    # synthetic points come first: safe (0), check cable out (1), check cable back (2)
    return synthetic[local_index].time_s if len(synthetic) > local_index else None


def _cp_items(planned: PlannedUnit, unit: UnitResult, start: datetime) -> list[bytes]:
    """Brachy Control Point Delivered items, encoded: plan control points reached and where it stopped.

    A PDR course record has tens of thousands of these: they are encoded column by column straight to
    bytes (``element_encoding``), not as pydicom Datasets.
    """
    channel = planned.channel
    rows = {int(index): row for row, index in enumerate(channel.control_point_indices)}
    points = [dcp for dcp in unit.control_points if dcp.plan_cp_index >= 0]  # not safe / check cable
    positions = []
    for dcp in points:
        row = rows.get(dcp.plan_cp_index)
        if row is None:
            raise RtsimError(f"channel {channel.number}: result names control point {dcp.plan_cp_index}")
        position = dcp.positions.get(SOURCE_AXIS)
        positions.append(
            float(position) if position is not None else float(channel.relative_positions_mm[row])
        )
    moments = [start + timedelta(seconds=dcp.time_s) for dcp in points]
    dates, times = zip(*map(dicom_date_time, moments), strict=True) if moments else ((), ())
    columns = (  # in tag order
        _CP_KEYS["TreatmentControlPointDate"].column(dates),
        _CP_KEYS["TreatmentControlPointTime"].column(times),
        _CP_KEYS["ControlPointRelativePosition"].column([format_ds(v, POSITION_DECIMALS) for v in positions]),
        _CP_KEYS["ReferencedControlPointIndex"].column([str(dcp.plan_cp_index) for dcp in points]),
    )
    return [encode_item_parts(parts) for parts in zip(*columns, strict=True)]


# --- summary ------------------------------------------------------------------------------------------


def brachy_summary_fields(plan: BrachyPlan, result: DeliveryResult, machine: MachineModel) -> dict:
    """The afterloader's block of summary.json: decay correction, pulses, per channel dwell and transit."""
    factor = decay_factor(plan, machine, result.session_start)
    al = machine.afterloader
    assert al is not None
    channels: dict[int, dict] = {}
    for unit in result.units:
        entry = channels.setdefault(
            unit.number,
            {
                "number": unit.number,
                "plan_channel_total_time_s": None,
                "dwell_time_s": 0.0,
                "transit_time_s": 0.0,
                "check_cable_time_s": 0.0,
                "pulses_delivered": 0,
            },
        )
        try:
            channel = plan.channel(unit.number)
            entry["plan_channel_total_time_s"] = round(channel.total_time_s * channel.pulses, 3)
        except KeyError:
            pass
        entry["dwell_time_s"] = round(entry["dwell_time_s"] + unit.delivered_meterset, 3)
        total = unit.total_time_s
        entry["transit_time_s"] = round(
            entry["transit_time_s"] + total * unit.limiting_axis_share.get(TRANSIT, 0.0), 3
        )
        entry["check_cable_time_s"] = round(
            entry["check_cable_time_s"] + total * unit.limiting_axis_share.get(CHECK_CABLE, 0.0), 3
        )
        if unit.delivered and unit.termination_status is TerminationStatus.NORMAL:
            entry["pulses_delivered"] += 1
    return {
        "treatment_type": plan.treatment_type,
        "source_serial_number": al.source.serial_number,
        "decay_correction_factor": round(factor, 6),
        "installed_rakr_at_treatment_ugy_per_h": round(
            strength_at(
                al.source.reference_air_kerma_rate_ugy_per_h,
                al.source.calibration_datetime,
                al.source.half_life_days,
                result.session_start,
            ),
            3,
        ),
        "pulses_planned": plan.pulses,
        "pulse_repetition_interval_s": plan.pulse_repetition_interval_s,
        "dwell_time_s": round(sum(u.delivered_meterset for u in result.units), 3),
        "transit_time_s": round(sum(c["transit_time_s"] for c in channels.values()), 3),
        "channels": list(channels.values()),
    }
