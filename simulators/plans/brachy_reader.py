"""DICOM RT Plan with RT Brachy Application Setups -> :class:`~simulators.plans.brachy_model.BrachyPlan`.

Lenient where real plans are sloppy (no file meta, DS strings over 16 characters, missing optional
attributes such as Channel Length, Source Strength Reference Time or Control Point 3D Position) and strict
where it matters: a broken control point sequence raises :class:`PlanReadError` naming the file,
application setup, channel, control point and attribute. A plan with beams, or an RT Ion Plan, is refused
with :class:`PlanRefusedError` (an afterloader delivers brachy plans only).

Rules checked: Number of Control Points equals the items given; Control Point Index runs 0..n-1;
Cumulative Time Weights never decrease, start at 0 and end at the Final Cumulative Time Weight (DS rounding
tolerated); every channel's Referenced Source Number is in the Source Sequence; Channel Numbers are unique.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, time

import numpy as np
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from simulators.errors import PlanReadError, PlanRefusedError
from simulators.plans.brachy_model import (
    ApplicationSetup,
    BrachyChannel,
    BrachyFractionGroup,
    BrachyPlan,
    BrachySource,
)
from simulators.plans.dicom_reader import (
    lenient_reading,
    plan_identity,
    plan_kind,
    read_error,
)

LINAC_PLAN_REFUSAL = (
    "RT Plan with beams: this machine is an afterloader and delivers brachytherapy plans only"
)
ION_PLAN_REFUSAL = "RT Ion Plan: this machine is an afterloader and delivers brachytherapy plans only"
WEIGHT_RELATIVE_TOLERANCE = 1e-4  # last CTW vs Final Cumulative Time Weight (DS rounding)


@dataclass(frozen=True, slots=True)
class _Where:
    source: str
    setup: int | None = None
    channel: int | None = None
    control_point: int | None = None

    def text(self) -> str:
        parts = [self.source]
        if self.setup is not None:
            parts.append(f"application setup {self.setup}")
        if self.channel is not None:
            parts.append(f"channel {self.channel}")
        if self.control_point is not None:
            parts.append(f"control point {self.control_point}")
        return ", ".join(parts)

    def error(self, keyword: str | None, problem: str) -> PlanReadError:
        return read_error(self.text(), keyword, problem)


def read_brachy_plan_dataset(ds: Dataset, source: str) -> BrachyPlan:
    """Turn a brachy RT Plan dataset into a :class:`BrachyPlan`; ``source`` names it in messages."""
    kind = plan_kind(ds)
    if kind == "linac":
        raise PlanRefusedError([f"{source}: {LINAC_PLAN_REFUSAL}"])
    if kind == "ion":
        raise PlanRefusedError([f"{source}: {ION_PLAN_REFUSAL}"])
    if kind != "brachy":
        raise PlanReadError(f"{source}: not an RT Plan with brachy application setups")
    with lenient_reading():
        try:
            return _read(ds, _Where(source))
        except (PlanReadError, PlanRefusedError):
            raise
        except Exception as exc:
            raise PlanReadError(f"{source}: cannot be read ({type(exc).__name__}: {exc})") from exc


# --- values -----------------------------------------------------------------------------------------


def _raw(item: Dataset, keyword: str) -> object | None:
    if keyword not in item:
        return None
    value = item[keyword].value
    if value is None or value == "" or (isinstance(value, (list, tuple, MultiValue)) and len(value) == 0):
        return None
    return value


def _str(item: Dataset, keyword: str) -> str:
    value = _raw(item, keyword)
    if value is None:
        return ""
    if isinstance(value, (MultiValue, list, tuple)):
        value = "\\".join(str(v) for v in value)
    return str(value).strip()


def _float(item: Dataset, keyword: str, where: _Where, *, required: bool = False) -> float | None:
    value = _raw(item, keyword)
    if value is None:
        if required:
            raise where.error(keyword, "missing or empty")
        return None
    if isinstance(value, (MultiValue, list, tuple)):
        if len(value) != 1:
            raise where.error(keyword, f"expected one value, found {len(value)}")
        value = value[0]
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise where.error(keyword, f"not a number: {value!r}") from None
    if not math.isfinite(number):
        raise where.error(keyword, f"not a finite number: {value!r}")
    return number


def _req_float(item: Dataset, keyword: str, where: _Where) -> float:
    value = _float(item, keyword, where, required=True)
    assert value is not None
    return value


def _int(item: Dataset, keyword: str, where: _Where, *, required: bool = False) -> int | None:
    number = _float(item, keyword, where, required=required)
    if number is None:
        return None
    if number != int(number):
        raise where.error(keyword, f"not an integer: {number!r}")
    return int(number)


def _req_int(item: Dataset, keyword: str, where: _Where) -> int:
    value = _int(item, keyword, where, required=True)
    assert value is not None
    return value


def _date_time(item: Dataset, date_kw: str, time_kw: str, where: _Where) -> datetime | None:
    """DA + TM -> datetime (midnight when the time is missing); None without a date."""
    text = _str(item, date_kw)
    if not text:
        return None
    try:
        day = date(int(text[0:4]), int(text[4:6]), int(text[6:8]))
    except (ValueError, IndexError):
        raise where.error(date_kw, f"not a DICOM date (YYYYMMDD): {text!r}") from None
    clock = _str(item, time_kw).replace(":", "")
    moment = time()
    if clock:
        try:
            whole, _, fraction = clock.partition(".")
            hours = int(whole[0:2])
            minutes = int(whole[2:4]) if len(whole) >= 4 else 0
            seconds = int(whole[4:6]) if len(whole) >= 6 else 0
            micros = int((fraction + "000000")[:6]) if fraction else 0
            moment = time(hours, minutes, seconds, micros)
        except ValueError:
            raise where.error(time_kw, f"not a DICOM time (HHMMSS.FFFFFF): {clock!r}") from None
    return datetime.combine(day, moment)


# --- modules ----------------------------------------------------------------------------------------


def _read(ds: Dataset, where: _Where) -> BrachyPlan:
    machines = list(ds.get("TreatmentMachineSequence") or [])
    machine_name = _str(machines[0], "TreatmentMachineName") if machines else ""
    sources = _read_sources(ds, where)
    setup_items = list(ds.get("ApplicationSetupSequence") or [])
    if not setup_items:
        raise where.error("ApplicationSetupSequence", "missing or empty: the plan has no application setup")
    setups = []
    seen_channels: dict[int, int] = {}
    for index, item in enumerate(setup_items, start=1):
        number = _int(item, "ApplicationSetupNumber", where)
        if number is None:
            raise where.error("ApplicationSetupNumber", f"missing in Application Setup Sequence item {index}")
        if any(s.number == number for s in setups):
            raise where.error("ApplicationSetupNumber", f"application setup number {number} is used twice")
        setup = _read_setup(item, number, sources, _Where(where.source, setup=number))
        for channel in setup.channels:
            other = seen_channels.get(channel.number)
            if other is not None:
                raise _Where(where.source, setup=number).error(
                    "ChannelNumber", f"channel {channel.number} is also used by application setup {other}"
                )
            seen_channels[channel.number] = number
        setups.append(setup)
    setups_tuple = tuple(setups)
    return BrachyPlan(
        identity=plan_identity(ds, where.source),
        technique=_str(ds, "BrachyTreatmentTechnique").upper(),
        treatment_type=_str(ds, "BrachyTreatmentType").upper(),
        treatment_machine_name=machine_name,
        sources=sources,
        setups=setups_tuple,
        fraction_groups=_read_fraction_groups(ds, setups_tuple, where),
        patient_position=_patient_position(ds),
    )


def _patient_position(ds: Dataset) -> str:
    setups = list(ds.get("PatientSetupSequence") or [])
    return _str(setups[0], "PatientPosition") if setups else ""


def _read_sources(ds: Dataset, where: _Where) -> tuple[BrachySource, ...]:
    items = list(ds.get("SourceSequence") or [])
    if not items:
        raise where.error("SourceSequence", "missing or empty: the plan names no source")
    sources: list[BrachySource] = []
    for index, item in enumerate(items, start=1):
        number = _int(item, "SourceNumber", where)
        if number is None:
            raise where.error("SourceNumber", f"missing in Source Sequence item {index}")
        if any(s.number == number for s in sources):
            raise where.error("SourceNumber", f"source number {number} is used twice")
        at = _Where(f"{where.source}, source {number}")
        sources.append(
            BrachySource(
                number=number,
                source_type=_str(item, "SourceType").upper(),
                manufacturer=_str(item, "SourceManufacturer"),
                isotope=_str(item, "SourceIsotopeName"),
                half_life_days=_float(item, "SourceIsotopeHalfLife", at),
                reference_air_kerma_rate_ugy_per_h=_float(item, "ReferenceAirKermaRate", at),
                strength_reference_datetime=_date_time(
                    item, "SourceStrengthReferenceDate", "SourceStrengthReferenceTime", at
                ),
                model_id=_str(item, "SourceModelID"),
                strength_units=_str(item, "SourceStrengthUnits").upper(),
            )
        )
    return tuple(sources)


def _read_setup(
    item: Dataset, number: int, sources: tuple[BrachySource, ...], where: _Where
) -> ApplicationSetup:
    channel_items = list(item.get("ChannelSequence") or [])
    if not channel_items:
        raise where.error("ChannelSequence", "missing or empty: the application setup has no channel")
    channels = []
    for index, channel_item in enumerate(channel_items, start=1):
        channel_number = _int(channel_item, "ChannelNumber", where)
        if channel_number is None:
            raise where.error("ChannelNumber", f"missing in Channel Sequence item {index}")
        if any(c.number == channel_number for c in channels):
            raise where.error("ChannelNumber", f"channel number {channel_number} is used twice")
        channels.append(
            _read_channel(
                channel_item, number, channel_number, sources, _Where(where.source, number, channel_number)
            )
        )
    return ApplicationSetup(
        number=number,
        setup_type=_str(item, "ApplicationSetupType").upper(),
        name=_str(item, "ApplicationSetupName"),
        total_reference_air_kerma=_float(item, "TotalReferenceAirKerma", where),
        channels=tuple(channels),
    )


def _read_channel(
    item: Dataset, setup: int, number: int, sources: tuple[BrachySource, ...], where: _Where
) -> BrachyChannel:
    source_number = _int(item, "ReferencedSourceNumber", where)
    if source_number is None:
        if len(sources) != 1:
            raise where.error("ReferencedSourceNumber", "missing, and the plan has more than one source")
        source_number = sources[0].number
    elif not any(s.number == source_number for s in sources):
        known = ", ".join(str(s.number) for s in sources)
        raise where.error(
            "ReferencedSourceNumber", f"source {source_number} is not in the Source Sequence ({known})"
        )
    total_time = _req_float(item, "ChannelTotalTime", where)
    if total_time < 0:
        raise where.error("ChannelTotalTime", f"negative time {total_time:g} s")
    cp_items = list(item.get("BrachyControlPointSequence") or [])
    if not cp_items:
        raise where.error("BrachyControlPointSequence", "missing or empty")
    declared = _int(item, "NumberOfControlPoints", where)
    if declared is not None and declared != len(cp_items):
        raise where.error(
            "NumberOfControlPoints",
            f"says {declared} but the Brachy Control Point Sequence has {len(cp_items)}",
        )
    indices, weights, positions, points = [], [], [], []
    for row, cp in enumerate(cp_items):
        at = _Where(where.source, where.setup, where.channel, row)
        index = _int(cp, "ControlPointIndex", at)
        if index is not None and index != row:
            raise at.error("ControlPointIndex", f"is {index}, expected {row} (indices run 0..n-1 in order)")
        weight = _req_float(cp, "CumulativeTimeWeight", at)
        if weights and weight < weights[-1]:
            raise at.error("CumulativeTimeWeight", f"{weight:g} is below the previous weight {weights[-1]:g}")
        if weight < 0:
            raise at.error("CumulativeTimeWeight", f"negative weight {weight:g}")
        indices.append(row)
        weights.append(weight)
        positions.append(_req_float(cp, "ControlPointRelativePosition", at))
        value = _raw(cp, "ControlPoint3DPosition")
        if value is not None:
            values = list(value) if isinstance(value, (MultiValue, list, tuple)) else [value]
            try:
                points.append([float(v) for v in values])
            except (TypeError, ValueError):
                raise at.error("ControlPoint3DPosition", f"not numbers: {values!r}") from None
            if len(points[-1]) != 3:
                raise at.error("ControlPoint3DPosition", f"expected 3 values, found {len(points[-1])}")
    final = _float(item, "FinalCumulativeTimeWeight", where)
    if final is None:
        final = weights[-1]
    if abs(weights[0]) > WEIGHT_RELATIVE_TOLERANCE * max(abs(final), 1.0):
        raise _Where(where.source, where.setup, where.channel, 0).error(
            "CumulativeTimeWeight", f"the first control point's weight must be 0, got {weights[0]:g}"
        )
    if final > 0 and not math.isclose(weights[-1], final, rel_tol=WEIGHT_RELATIVE_TOLERANCE, abs_tol=1e-9):
        raise where.error(
            "FinalCumulativeTimeWeight",
            f"{final:g}, but the last control point's Cumulative Time Weight is {weights[-1]:g}",
        )
    if total_time > 0 and weights[-1] <= 0:
        raise where.error(
            "CumulativeTimeWeight", f"all weights are 0 but Channel Total Time is {total_time:g} s"
        )
    weight_array = np.asarray(weights, dtype=float)
    weight_array[0] = 0.0  # snap DS rounding of the first weight
    if final > 0:
        weight_array[-1] = final  # snap DS rounding of the last weight
    pulses = _int(item, "NumberOfPulses", where)
    interval = _float(item, "PulseRepetitionInterval", where)
    if pulses is not None and pulses < 1:
        raise where.error("NumberOfPulses", f"must be >= 1, got {pulses}")
    if interval is not None and interval < 0:
        raise where.error("PulseRepetitionInterval", f"negative interval {interval:g} s")
    return BrachyChannel(
        number=number,
        setup_number=setup,
        length_mm=_float(item, "ChannelLength", where),
        total_time_s=total_time,
        source_movement_type=_str(item, "SourceMovementType").upper() or "STEPWISE",
        source_number=source_number,
        final_cumulative_time_weight=final,
        control_point_indices=np.asarray(indices, dtype=int),
        cumulative_time_weights=weight_array,
        relative_positions_mm=np.asarray(positions, dtype=float),
        positions_3d_mm=np.asarray(points, dtype=float) if len(points) == len(cp_items) else None,
        number_of_pulses=pulses,
        pulse_repetition_interval_s=interval,
        afterloader_channel_id=_str(item, "AfterloaderChannelID"),
        source_applicator_number=_int(item, "SourceApplicatorNumber", where),
        source_applicator_id=_str(item, "SourceApplicatorID"),
        source_applicator_type=_str(item, "SourceApplicatorType"),
        source_applicator_length_mm=_float(item, "SourceApplicatorLength", where),
        transfer_tube_number=_int(item, "TransferTubeNumber", where),
        transfer_tube_length_mm=_float(item, "TransferTubeLength", where),
        step_size_mm=_float(item, "SourceApplicatorStepSize", where),
    )


def _read_fraction_groups(
    ds: Dataset, setups: tuple[ApplicationSetup, ...], where: _Where
) -> tuple[BrachyFractionGroup, ...]:
    groups = []
    known = {s.number for s in setups}
    for index, item in enumerate(ds.get("FractionGroupSequence") or [], start=1):
        number = _int(item, "FractionGroupNumber", where)
        numbers = []
        for ref in item.get("ReferencedBrachyApplicationSetupSequence") or []:
            setup = _int(ref, "ReferencedBrachyApplicationSetupNumber", where)
            if setup is None:
                continue
            if setup not in known:
                raise where.error(
                    "ReferencedBrachyApplicationSetupNumber",
                    f"fraction group {number or index} references application setup {setup}, "
                    "which is not in the Application Setup Sequence",
                )
            numbers.append(setup)
        groups.append(
            BrachyFractionGroup(
                number=number if number is not None else index,
                fractions_planned=_int(item, "NumberOfFractionsPlanned", where) or 0,
                setup_numbers=tuple(numbers) or tuple(s.number for s in setups),
            )
        )
    if not groups:
        groups.append(BrachyFractionGroup(1, 1, tuple(s.number for s in setups)))
    return tuple(groups)
