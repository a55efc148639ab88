"""DeliveryResult -> DICOM RT Beams Treatment Record (one record per session), and writing it to disk.

What the record says, and where each value comes from (PS3.3 A.29, C.8.8.21; reference
``dicom-interface.md`` §1.9 and §3.4):

* Patient, General Study: copied from ``plan.identity.patient``. RT Series: Modality RTRECORD, a new
  Series Instance UID, Operators' Name. General Equipment: rtsim as manufacturer, the simulated model.
* RT General Treatment Record: Instance Number, Treatment Date/Time = the last recorded control point,
  Referenced RT Plan Sequence, Referenced Treatment Record Sequence (earlier partial records) if given.
* RT Treatment Machine Record: the machine as the plan names it (``treatment_machine_name``) with the
  model's manufacturer and model name.
* RT Beams Session Record: one Treatment Session Beam Sequence item per unit that was *administered*
  in this session, i.e. ``UnitResult.delivered`` with at least one reached control point. PS3.3 defines
  the sequence as "Beams administered during treatment session"; beams never started because the
  session stopped earlier are left out (the IHE-RO interrupted record lists only the beam it treated);
  the TMS schedules them again in a later session. A session with no administered beam has no record
  (:class:`RtsimError`).

Metersets (PS3.3 C.8.8.21.2). ``UnitResult``/``DeliveredControlPoint`` metersets are cumulative for the
beam *in this session* (0 where the session's delivery of the beam began). For a CONTINUATION task with
start S and end E (``ProgramUnit.meterset_offset == S``) the record converts them to beam terms:

* Specified Primary Meterset = the fraction group's Beam Meterset (not E - S).
* Delivered Primary Meterset = the meterset delivered in this session (``UnitResult.delivered_meterset``),
  so that the records of all sessions of one fraction add up to the Beam Meterset.
* Per control point: Specified Meterset = the plan's cumulative meterset; Delivered Meterset
  DelMS = MAX(S, MIN(SpecMS, E, S + delivered-in-session)). Control points treated in an earlier session
  carry S, fully treated ones SpecMS, the point where delivery stopped the meterset at the stop.
  For a TREATMENT task S = 0 and E = the Beam Meterset.

Control points: every reached control point of the result (including the point of interruption) is
one item, with its time (``result.session_start`` + ``time_s``) and the *actual* axis values. The first
item carries every attribute; later items carry metersets, dose rates and time always, and any other
attribute only when its recorded value differs from the previous item's (the control-point rule of
PS3.3 C.8.8.14.5). Decimal strings are rounded to a stated resolution and fit in 16 characters.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from pydicom import config as pydicom_config
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import RTBeamsTreatmentRecordStorage

from machine_models.schema import MachineModel
from simulators.core.program import DeliveryProgram
from simulators.core.results import DeliveredControlPoint, DeliveryResult, UnitResult
from simulators.errors import RtsimError
from simulators.plans.model import BeamTask, LinacBeam, LinacPlan
from simulators.records.common import (
    dicom_date_time,
    file_meta_for,
    mark_written_encoding,
    patient_and_study,
    plan_and_record_references,
    series_and_equipment,
)
from simulators.records.decimal_strings import ds_rows, format_ds
from simulators.records.element_encoding import ElementKey, encode_item_parts, raw_sequence_element
from simulators.records.uids import RTSIM_UID_ROOT, UidSource

VERIFICATION_STATUSES = ("VERIFIED", "VERIFIED_OVR", "NOT_VERIFIED")

# Rounding of decimal strings: metersets to 1e-5 (as vendor records), positions/angles to 1e-3 mm/deg.
METERSET_DECIMALS = 5
POSITION_DECIMALS = 3
RATE_DECIMALS = 3
TIME_DECIMALS = 3


@dataclass(frozen=True, slots=True)
class _Bounds:
    """The beam meterset window of this session: S (start) and E (end), in beam terms."""

    start: float
    end: float


def build_beams_treatment_record(
    plan: LinacPlan,
    result: DeliveryResult,
    machine: MachineModel,
    *,
    treatment_machine_name: str,
    beam_tasks: Sequence[BeamTask] | None = None,
    fraction_group_number: int = 1,
    operator_name: str = "",
    referenced_record_uids: Sequence[str] = (),
    instance_number: int = 1,
    program: DeliveryProgram | None = None,
    institution_name: str = "",
    station_name: str | None = None,
    device_serial_number: str | None = None,
    verification_status: str = "VERIFIED",
    plan_dataset: Dataset | None = None,
    uid_prefix: str = RTSIM_UID_ROOT,
    uid_seed: int | str | None = None,
) -> Dataset:
    """The RT Beams Treatment Record of one session (a Dataset with File Meta, ready to save or send).

    ``beam_tasks`` (from the RT Beams Delivery Instruction) give per beam the delivery type, fraction number,
    fraction group and continuation bounds; without them every unit is a TREATMENT of fraction 1 of
    ``fraction_group_number``. ``program`` (optional) supplies the planned beam-on time per beam
    (Specified Treatment Time). ``plan_dataset`` (the RT Plan as received) supplies the block, compensator
    and bolus identifiers for the Recorded Block/Compensator and Referenced Bolus Sequences (required when
    the beam has any; the typed plan carries only their counts); without it those sequences are left out.
    ``uid_seed`` makes the new UIDs reproducible (tests); leave it None in
    production. Raises :class:`RtsimError` naming the plan, beam and control point when the result does not
    fit the plan.
    """
    if verification_status not in VERIFICATION_STATUSES:
        raise RtsimError(
            f"treatment verification status {verification_status!r} is not one of {VERIFICATION_STATUSES}"
        )
    # Every value is formatted here to its VR (DS <= 16 chars, ...): pydicom's per-value validation on
    # assignment would only repeat that, at a cost of ~1/3 of a sliding-window record's build time.
    settings = pydicom_config.settings
    previous_mode = settings.writing_validation_mode
    settings.writing_validation_mode = pydicom_config.IGNORE
    try:
        return _build_record(
            plan,
            result,
            machine,
            treatment_machine_name=treatment_machine_name,
            beam_tasks=beam_tasks,
            fraction_group_number=fraction_group_number,
            operator_name=operator_name,
            referenced_record_uids=referenced_record_uids,
            instance_number=instance_number,
            program=program,
            institution_name=institution_name,
            station_name=station_name,
            device_serial_number=device_serial_number,
            verification_status=verification_status,
            plan_dataset=plan_dataset,
            uid_prefix=uid_prefix,
            uid_seed=uid_seed,
        )
    finally:
        settings.writing_validation_mode = previous_mode


def _build_record(
    plan: LinacPlan,
    result: DeliveryResult,
    machine: MachineModel,
    *,
    treatment_machine_name: str,
    beam_tasks: Sequence[BeamTask] | None,
    fraction_group_number: int,
    operator_name: str,
    referenced_record_uids: Sequence[str],
    instance_number: int,
    program: DeliveryProgram | None,
    institution_name: str,
    station_name: str | None,
    device_serial_number: str | None,
    verification_status: str,
    plan_dataset: Dataset | None,
    uid_prefix: str,
    uid_seed: int | None,
) -> Dataset:
    source = plan.identity.source or "plan"
    tasks = {task.beam_number: task for task in beam_tasks or ()}
    group_number = _fraction_group_number(tasks, fraction_group_number, source)
    group = next((g for g in plan.fraction_groups if g.number == group_number), None)
    uids = UidSource(uid_prefix, uid_seed, (plan.identity.sop_instance_uid, result.session_start.isoformat()))

    administered = [u for u in result.units if u.delivered and u.control_points]
    if not administered:
        raise RtsimError(
            f"{source}: no beam was administered in this session (status {result.termination_status}); "
            "there is nothing to record"
        )
    planned_beam_on_s = _planned_beam_on_times(program)
    plan_beam_items = {
        int(b.BeamNumber): b
        for b in (plan_dataset.get("BeamSequence", []) if plan_dataset is not None else [])
        if b.get("BeamNumber") is not None
    }
    beam_items = []
    last_time_s = 0.0
    dosimeter_units: set[str] = set()
    for unit in administered:
        beam = _plan_beam(plan, unit, source)
        task = tasks.get(unit.number, BeamTask(beam_number=unit.number, fraction_group_number=group_number))
        specified_mu = (
            group.beam_metersets_mu.get(beam.number, beam.beam_meterset_mu)
            if group
            else beam.beam_meterset_mu
        )
        bounds = _bounds(task, specified_mu)
        item = _session_beam_item(
            beam,
            unit,
            task,
            bounds,
            specified_mu,
            result.session_start,
            planned_beam_on_s,
            source,
            verification_status,
        )
        if beam.number in plan_beam_items:
            _recorded_accessories(item, plan_beam_items[beam.number])
        beam_items.append(item)
        dosimeter_units.add(beam.primary_dosimeter_unit)
        last_time_s = max(last_time_s, max(cp.time_s for cp in unit.control_points))
    if len(dosimeter_units) != 1:
        raise RtsimError(
            f"{source}: beams mix primary dosimeter units {sorted(dosimeter_units)} in one session"
        )

    ds = Dataset()
    patient_and_study(ds, plan.identity.patient)
    ended = result.session_start + timedelta(seconds=last_time_s)
    fractions = sorted({t.fraction_number for t in beam_tasks or ()}) or [1]
    series_and_equipment(
        ds,
        machine,
        series_instance_uid=uids.next("series"),
        description=f"rtsim record FG{group_number} F{','.join(str(f) for f in fractions)}",
        operator_name=operator_name,
        station_name=station_name or treatment_machine_name,
        institution_name=institution_name,
        device_serial_number=device_serial_number,
    )
    ds.InstanceNumber = instance_number
    ds.TreatmentDate, ds.TreatmentTime = dicom_date_time(ended)
    plan_and_record_references(ds, plan.identity, RTBeamsTreatmentRecordStorage, referenced_record_uids)
    _patient_setup(ds, plan, [plan.beam(u.number) for u in administered])
    machine_item = Dataset()
    machine_item.TreatmentMachineName = treatment_machine_name
    machine_item.Manufacturer = machine.manufacturer
    machine_item.InstitutionName = institution_name
    machine_item.ManufacturerModelName = machine.model_name
    machine_item.DeviceSerialNumber = device_serial_number or f"RTSIM-{machine.model_id}"[:64]
    ds.TreatmentMachineSequence = DicomSequence([machine_item])
    ds.ReferencedFractionGroupNumber = group_number
    ds.NumberOfFractionsPlanned = group.fractions_planned if group else None
    ds.PrimaryDosimeterUnit = dosimeter_units.pop()
    ds.TreatmentSessionBeamSequence = DicomSequence(beam_items)

    ds.SOPClassUID = RTBeamsTreatmentRecordStorage
    ds.SOPInstanceUID = uids.next("record")
    ds.InstanceCreationDate, ds.InstanceCreationTime = dicom_date_time(ended)
    offset = result.session_start.utcoffset()
    if offset is not None:
        minutes = int(offset.total_seconds() // 60)
        sign = "+" if minutes >= 0 else "-"
        ds.TimezoneOffsetFromUTC = f"{sign}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"
    if _needs_utf8(ds):
        ds.SpecificCharacterSet = "ISO_IR 192"
    ds.file_meta = file_meta_for(ds)
    mark_written_encoding(ds)
    return ds


# --- modules ------------------------------------------------------------------------------------------


def _patient_setup(ds: Dataset, plan: LinacPlan, beams: Sequence[LinacBeam]) -> None:
    """RT Patient Setup module (one item per setup the beams reference; the plan's patient position)."""
    if not plan.patient_position:
        return
    numbers = sorted({b.referenced_patient_setup_number or 1 for b in beams})
    items = []
    for number in numbers:
        item = Dataset()
        item.PatientSetupNumber = number
        item.PatientPosition = plan.patient_position
        items.append(item)
    ds.PatientSetupSequence = DicomSequence(items)


def _needs_utf8(ds: Dataset) -> bool:
    texts = [
        str(ds.get(k, ""))
        for k in ("PatientName", "OperatorsName", "ReferringPhysicianName", "InstitutionName")
    ]
    texts += [
        str(item.get("BeamName", "")) + str(item.get("BeamDescription", ""))
        for item in ds.TreatmentSessionBeamSequence
    ]
    return any(not t.isascii() for t in texts)


# --- beams --------------------------------------------------------------------------------------------


def _fraction_group_number(tasks: Mapping[int, BeamTask], default: int, source: str) -> int:
    numbers = {t.fraction_group_number for t in tasks.values()}
    if len(numbers) > 1:
        raise RtsimError(
            f"{source}: beam tasks name several fraction groups {sorted(numbers)}; one record holds one"
        )
    return numbers.pop() if numbers else default


def _planned_beam_on_times(program: DeliveryProgram | None) -> dict[int, float]:
    if program is None:
        return {}
    return {unit.number: unit.beam_on_time_s for unit in program.units}


def _plan_beam(plan: LinacPlan, unit: UnitResult, source: str) -> LinacBeam:
    try:
        return plan.beam(unit.number)
    except KeyError:
        raise RtsimError(
            f"{source}: delivered unit {unit.number} ({unit.name}) is not a beam of the plan"
        ) from None


def _bounds(task: BeamTask, specified_mu: float) -> _Bounds:
    if task.delivery_type.upper() == "CONTINUATION":
        start = task.start_meterset_mu if task.start_meterset_mu is not None else 0.0
        end = task.end_meterset_mu if task.end_meterset_mu is not None else specified_mu
        return _Bounds(start=float(start), end=float(end))
    return _Bounds(start=0.0, end=float(specified_mu))


def _session_beam_item(
    beam: LinacBeam,
    unit: UnitResult,
    task: BeamTask,
    bounds: _Bounds,
    specified_mu: float,
    session_start: datetime,
    planned_beam_on_s: Mapping[int, float],
    source: str,
    verification_status: str,
) -> Dataset:
    """One Treatment Session Beam Sequence item."""
    label = f"{source}: beam {beam.number} ({beam.name})"
    item = Dataset()
    item.ReferencedBeamNumber = beam.number
    item.BeamName = beam.name
    if beam.description:
        item.BeamDescription = beam.description
    item.BeamType = beam.beam_type
    item.RadiationType = beam.radiation_type
    fluence = Dataset()
    fluence.FluenceMode = "NON_STANDARD" if beam.fluence_mode_id else "STANDARD"
    if beam.fluence_mode_id:
        fluence.FluenceModeID = beam.fluence_mode_id
    item.PrimaryFluenceModeSequence = DicomSequence([fluence])
    pairs = []
    for device_type, count in beam.device_pair_counts.items():
        pair = Dataset()
        pair.RTBeamLimitingDeviceType = device_type
        pair.NumberOfLeafJawPairs = count
        pairs.append(pair)
    item.BeamLimitingDeviceLeafPairsSequence = DicomSequence(pairs)
    item.NumberOfWedges = len(beam.wedges)
    if beam.wedges:
        recorded = []
        for wedge in beam.wedges:
            w = Dataset()
            w.WedgeNumber = wedge.number
            w.WedgeType = wedge.wedge_type
            w.WedgeID = wedge.wedge_id
            w.WedgeAngle = format_ds(wedge.angle_deg, POSITION_DECIMALS)
            w.WedgeOrientation = format_ds(wedge.orientation_deg, POSITION_DECIMALS)
            recorded.append(w)
        item.RecordedWedgeSequence = DicomSequence(recorded)
    item.NumberOfCompensators = beam.number_of_compensators
    item.NumberOfBoli = beam.number_of_boli
    item.NumberOfBlocks = beam.number_of_blocks
    if beam.applicator_id is not None:
        applicator = Dataset()
        applicator.ApplicatorID = beam.applicator_id
        applicator.ApplicatorType = beam.applicator_type or ""
        item.ApplicatorSequence = DicomSequence([applicator])
    item.CurrentFractionNumber = task.fraction_number
    item.TreatmentDeliveryType = task.delivery_type.upper()
    item.TreatmentTerminationStatus = str(unit.termination_status)
    if unit.termination_code:
        item.TreatmentTerminationCode = unit.termination_code[:16]
    item.TreatmentVerificationStatus = verification_status
    item.SpecifiedPrimaryMeterset = format_ds(specified_mu, METERSET_DECIMALS)
    item.DeliveredPrimaryMeterset = format_ds(unit.delivered_meterset, METERSET_DECIMALS)
    if unit.number in planned_beam_on_s:
        item.SpecifiedTreatmentTime = format_ds(planned_beam_on_s[unit.number], TIME_DECIMALS)
    item.DeliveredTreatmentTime = format_ds(unit.beam_on_time_s, TIME_DECIMALS)
    control_points = _control_point_items(beam, unit, bounds, session_start, label)
    item.NumberOfControlPoints = len(control_points)
    sequence = _CP_KEYS["ControlPointDeliverySequence"]
    item[sequence.tag] = raw_sequence_element(sequence, control_points)
    return item


def _recorded_accessories(item: Dataset, plan_beam: Dataset) -> None:
    """Recorded Block / Recorded Compensator / Referenced Bolus Sequences from the plan's beam item."""
    blocks = []
    for block in plan_beam.get("BlockSequence", []):
        recorded = Dataset()
        for source_kw, target_kw in (
            ("BlockTrayID", "BlockTrayID"),
            ("AccessoryCode", "AccessoryCode"),
            ("BlockNumber", "ReferencedBlockNumber"),
        ):
            if source_kw in block:
                setattr(recorded, target_kw, block[source_kw].value)
        recorded.BlockName = block.get("BlockName", "")  # Type 2
        blocks.append(recorded)
    if blocks:
        item.RecordedBlockSequence = DicomSequence(blocks)
    compensators = []
    for compensator in plan_beam.get("CompensatorSequence", []):
        recorded = Dataset()
        for source_kw, target_kw in (
            ("AccessoryCode", "AccessoryCode"),
            ("CompensatorNumber", "ReferencedCompensatorNumber"),
            ("CompensatorType", "CompensatorType"),
            ("CompensatorTrayID", "CompensatorTrayID"),
            ("CompensatorID", "CompensatorID"),
        ):
            if source_kw in compensator:
                setattr(recorded, target_kw, compensator[source_kw].value)
        compensators.append(recorded)
    if compensators:
        item.RecordedCompensatorSequence = DicomSequence(compensators)
    boli = []
    for bolus in plan_beam.get("ReferencedBolusSequence", []):
        recorded = Dataset()
        for keyword in ("ReferencedROINumber", "BolusID", "AccessoryCode"):
            if keyword in bolus:
                setattr(recorded, keyword, bolus[keyword].value)
        boli.append(recorded)
    if boli:
        item.ReferencedBolusSequence = DicomSequence(boli)


def _control_point_items(
    beam: LinacBeam, unit: UnitResult, bounds: _Bounds, session_start: datetime, label: str
) -> list[bytes]:
    """The Control Point Delivery Sequence items of one beam, encoded (see ``element_encoding``).

    Built column by column (one attribute across all control points), then item by item. Each item
    carries its index, time, metersets and dose rates; every other attribute is in the first item and
    then only in the items where its value changes (PS3.3 C.8.8.14.5).
    """
    rows = {int(index): row for row, index in enumerate(beam.control_point_indices)}
    session_span = bounds.end - bounds.start
    tolerance = 1e-6 * max(1.0, abs(bounds.end))
    beam_rows = []
    for dcp in unit.control_points:
        where = f"{label}: control point {dcp.plan_cp_index}"
        if dcp.plan_cp_index not in rows:
            raise RtsimError(f"{where}: the result names a control point the beam does not have")
        if not -tolerance <= dcp.delivered_meterset <= session_span + tolerance:
            raise RtsimError(
                f"{where}: delivered meterset {dcp.delivered_meterset:g} is outside this session's range "
                f"[0, {session_span:g}] (results must be cumulative for the beam in this session)"
            )
        beam_rows.append(rows[dcp.plan_cp_index])
    points = unit.control_points
    n = len(points)
    columns: list[tuple[int, list[bytes | None]]] = []

    def always(keyword: str, texts: Sequence[str | None]) -> None:
        key = _CP_KEYS[keyword]
        columns.append((key.tag, key.column(texts)))

    def when_changed(keyword: str, texts: Sequence[str | None]) -> None:
        key = _CP_KEYS[keyword]
        columns.append((key.tag, key.column(texts, _changed(texts))))

    moments = [session_start + timedelta(seconds=dcp.time_s) for dcp in points]
    specified = beam.cumulative_meterset_mu[beam_rows].tolist()
    delivered = [
        max(bounds.start, min(spec, bounds.end, bounds.start + dcp.delivered_meterset))
        for spec, dcp in zip(specified, points, strict=True)
    ]
    scalars = _scalar_columns(beam, points, beam_rows)
    always("ReferencedControlPointIndex", [str(dcp.plan_cp_index) for dcp in points])
    dates, times = zip(*map(dicom_date_time, moments), strict=True) if moments else ((), ())
    always("TreatmentControlPointDate", dates)
    always("TreatmentControlPointTime", times)
    always("SpecifiedMeterset", [format_ds(value, METERSET_DECIMALS) for value in specified])
    always("DeliveredMeterset", [format_ds(value, METERSET_DECIMALS) for value in delivered])
    always("DoseRateSet", scalars["DoseRateSet"])
    always("DoseRateDelivered", scalars["DoseRateDelivered"])
    unit_key = _CP_KEYS["NominalBeamEnergyUnit"]
    energy_unit = "MV" if beam.radiation_type == "PHOTON" else "MEV"
    columns.append((unit_key.tag, unit_key.column([energy_unit] * n, [True] + [False] * (n - 1))))
    when_changed("NominalBeamEnergy", [format_ds(beam.nominal_energy_mev, POSITION_DECIMALS)] * n)
    for angle_keyword, direction_keyword, directions_attribute in _ANGLE_AXES:
        directions = getattr(beam, directions_attribute)
        when_changed(angle_keyword, scalars[angle_keyword])
        when_changed(direction_keyword, [directions[row] or "NONE" for row in beam_rows])
    when_changed("TableTopEccentricAngle", ["0"] * n)
    when_changed("TableTopEccentricRotationDirection", ["NONE"] * n)
    for keyword in _TABLE_KEYWORDS:
        when_changed(keyword, scalars[keyword])
    if beam.wedges:
        columns.append(_wedge_position_column(beam, beam_rows))
    columns.append(_device_position_column(_device_positions(beam, points, beam_rows), n))
    columns.sort(key=lambda column: column[0])
    return [
        encode_item_parts([column[i] for _, column in columns if column[i] is not None]) for i in range(n)
    ]


def _changed(values: Sequence[object]) -> list[bool]:
    """True at the first value and wherever a value differs from the one before."""
    return [True] + [a != b for a, b in itertools.pairwise(values)]


def _wedge_position_column(beam: LinacBeam, beam_rows: Sequence[int]) -> tuple[int, list[bytes | None]]:
    """The Wedge Position Sequence element of each item (None where no wedge changed)."""
    states = [
        tuple("IN" if beam.wedge_in[row, k] else "OUT" for k in range(len(beam.wedges))) for row in beam_rows
    ]
    position_key, number_key = _CP_KEYS["WedgePosition"], _CP_KEYS["ReferencedWedgeNumber"]
    sequence_key = _CP_KEYS["WedgePositionSequence"]
    column: list[bytes | None] = []
    for state, write in zip(states, _changed(states), strict=True):
        if not write:
            column.append(None)
            continue
        items = [
            encode_item_parts(sorted([position_key.text(position), number_key.text(str(wedge.number))]))
            for wedge, position in zip(beam.wedges, state, strict=True)
        ]
        column.append(sequence_key.sequence(items))
    return sequence_key.tag, column


def _device_position_column(positions: Mapping[str, list[str]], count: int) -> tuple[int, list[bytes | None]]:
    """The Beam Limiting Device Position Sequence element of each item: the devices that moved."""
    type_key, positions_key = _CP_KEYS["RTBeamLimitingDeviceType"], _CP_KEYS["LeafJawPositions"]
    sequence_key = _CP_KEYS["BeamLimitingDevicePositionSequence"]
    per_device = []
    for device_type, texts in positions.items():
        head = type_key.text(device_type)
        encoded = positions_key.column(texts, _changed(texts))
        per_device.append(
            [None if element is None else encode_item_parts([head, element]) for element in encoded]
        )
    column: list[bytes | None] = [None] * count
    for i, device_items in enumerate(zip(*per_device, strict=True)):
        present = [item for item in device_items if item is not None]
        if present:
            column[i] = sequence_key.sequence(present)
    return sequence_key.tag, column


# The decimal-string attributes of a control point item, formatted for all control points at once:
# (keyword, DeliveredControlPoint field or result position key, decimals, wrapped to [0, 360) degrees).
_SCALAR_COLUMNS = (
    ("DoseRateSet", "dose_rate_set_per_min", RATE_DECIMALS, False),
    ("DoseRateDelivered", "dose_rate_delivered_per_min", RATE_DECIMALS, False),
    ("GantryAngle", "gantry_deg", POSITION_DECIMALS, True),
    ("BeamLimitingDeviceAngle", "collimator_deg", POSITION_DECIMALS, True),
    ("PatientSupportAngle", "couch_deg", POSITION_DECIMALS, True),
    ("TableTopVerticalPosition", "table_top_vertical_mm", POSITION_DECIMALS, False),
    ("TableTopLongitudinalPosition", "table_top_longitudinal_mm", POSITION_DECIMALS, False),
    ("TableTopLateralPosition", "table_top_lateral_mm", POSITION_DECIMALS, False),
)


def _scalar_columns(
    beam: LinacBeam, control_points: Sequence[DeliveredControlPoint], beam_rows: Sequence[int]
) -> dict[str, list[str | None]]:
    """Per ``_SCALAR_COLUMNS`` keyword, its DS text at each recorded control point (None: not finite)."""
    columns = []
    for _, key, decimals, is_angle in _SCALAR_COLUMNS:
        if key.startswith("dose_rate"):
            values = [getattr(dcp, key) for dcp in control_points]
        else:
            planned = getattr(beam, key)
            pairs = zip(control_points, beam_rows, strict=True)
            actual = (_actual(dcp, key, planned, row) for dcp, row in pairs)
            values = [math.nan if value is None else np.ravel(value)[0] for value in actual]
        column = np.round(np.array(values, dtype=float), decimals)  # each column to its own decimals
        if is_angle:
            column = np.mod(column, 360.0)
            column[np.round(column, decimals) >= 360.0] = 0.0
        columns.append(column)
    table = np.column_stack(columns)
    finite = np.isfinite(table)
    decimals = max(decimals for _, _, decimals, _ in _SCALAR_COLUMNS)
    rows = [row.split("\\") for row in ds_rows(np.where(finite, table, 0.0), decimals)]
    texts: dict[str, list[str | None]] = {}
    for index, (keyword, _, _, _) in enumerate(_SCALAR_COLUMNS):
        texts[keyword] = [
            row[index] if ok else None for row, ok in zip(rows, finite[:, index].tolist(), strict=True)
        ]
    return texts


def _device_positions(
    beam: LinacBeam, control_points: Sequence[DeliveredControlPoint], beam_rows: Sequence[int]
) -> dict[str, list[str]]:
    """Per beam limiting device, its Leaf/Jaw Positions text at each recorded control point."""
    texts = {}
    for key, device_type in (
        ("jaw_x_mm", beam.jaw_x_device_type),
        ("jaw_y_mm", beam.jaw_y_device_type),
        ("mlc_mm", beam.mlc_device_type),
    ):
        planned = getattr(beam, key)
        if device_type is None:
            continue
        if planned is None and not all(key in dcp.positions for dcp in control_points):
            continue
        values = [_actual(dcp, key, planned, row) for dcp, row in zip(control_points, beam_rows, strict=True)]
        texts[device_type] = ds_rows(np.stack([np.ravel(v) for v in values]), POSITION_DECIMALS)
    return texts


_CP_KEYS = {
    keyword: ElementKey(keyword)
    for keyword in (
        "ControlPointDeliverySequence",
        "ReferencedControlPointIndex",
        "TreatmentControlPointDate",
        "TreatmentControlPointTime",
        "SpecifiedMeterset",
        "DeliveredMeterset",
        "DoseRateSet",
        "DoseRateDelivered",
        "NominalBeamEnergy",
        "NominalBeamEnergyUnit",
        "WedgePositionSequence",
        "WedgePosition",
        "ReferencedWedgeNumber",
        "BeamLimitingDevicePositionSequence",
        "RTBeamLimitingDeviceType",
        "LeafJawPositions",
        "GantryAngle",
        "GantryRotationDirection",
        "BeamLimitingDeviceAngle",
        "BeamLimitingDeviceRotationDirection",
        "PatientSupportAngle",
        "PatientSupportRotationDirection",
        "TableTopEccentricAngle",
        "TableTopEccentricRotationDirection",
        "TableTopVerticalPosition",
        "TableTopLongitudinalPosition",
        "TableTopLateralPosition",
    )
}
_ANGLE_AXES = (  # (angle keyword, direction keyword, LinacBeam direction attribute)
    ("GantryAngle", "GantryRotationDirection", "gantry_direction"),
    ("BeamLimitingDeviceAngle", "BeamLimitingDeviceRotationDirection", "collimator_direction"),
    ("PatientSupportAngle", "PatientSupportRotationDirection", "couch_direction"),
)
_TABLE_KEYWORDS = ("TableTopVerticalPosition", "TableTopLongitudinalPosition", "TableTopLateralPosition")


def _actual(dcp: DeliveredControlPoint, key: str, planned: np.ndarray | None, row: int) -> np.ndarray | None:
    """The actual value of axis ``key`` at this control point; the plan's value if the result has none."""
    if key in dcp.positions:
        return np.asarray(dcp.positions[key], dtype=float)
    if planned is None:
        return None
    return np.asarray(planned[row], dtype=float)
