"""HDR/PDR afterloader: typed brachy plan -> :class:`DeliveryProgram` (one unit per channel and pulse).

What moves when (reference machine-models.md §5.2), for each channel in the delivery order:

1. SETUP: the indexer turns to the channel (``indexer_move_s``). Before the first channel of every PDR
   pulse after the first, the unit also waits out the Pulse Repetition Interval (measured from the start
   of the previous pulse); that wait is the segment's limiting axis ``"pulse_interval"``.
2. HOLD_MOVE x 2: the check (dummy) cable runs out to the most distal planned dwell and back
   (``safe_to_channel_mm`` + position, at ``check_cable_speed_mm_per_s``), limiting axis ``"check_cable"``.
   No radiation: the door may be open, and an obstruction found here leaves the source in the safe.
3. BEAM segments from here on, because the source is out of the safe (so the engine's door interlock and
   beam-on permit apply to transit too): the transit out to the first control point, the plan's own
   control-point intervals (a dwell where the cumulative time grows in place, limiting axis ``"dwell"``;
   a step where the position changes, limiting axis ``"source_transit"``), and the retraction to the safe.
   Transit runs at ``source_speed_mm_per_s`` and every arrival at a control point adds ``dwell_settle_s``.
   Transit segments deliver no meterset: the unit's meterset is dwell time only, so transit time is
   reported apart (its share of the unit's time is ``limiting_axis_share["source_transit"]``).

Dwell times are corrected for decay (:mod:`machine_models.decay`): each planned interval x
``S_plan / S_installed(treatment_time)``, rounded to the timer resolution (PS3.3 C.8.8.15.6). The
meterset unit is ``"s"``; ``cp_meterset`` is the session's cumulative corrected dwell time from 0.

Control points of a unit: three synthetic ones first (source in the safe, check cable at the distal end,
check cable back), then the plan's (``cp_plan_indices`` = Control Point Index), then the source back in
the safe; synthetic control points carry plan index ``-1``. Positions (``cp_positions``):
``source_position_mm`` and ``check_cable_mm`` (mm along the channel from its proximal end, negative in
the safe) and ``channel`` (the indexer's channel number).

Continuations (:class:`~simulators.plans.brachy_model.BrachyTask`): pulses before the continuation pulse are
skipped; in that pulse an omitted channel is skipped and a channel with a window of Cumulative Time Weights
delivers only that window: control points before the window are passed in transit, the dwell holding the
window start delivers its remainder. ``meterset_offset`` is the corrected time already delivered. A window
bound is the same share of the channel's corrected time as of its Final Cumulative Time Weight
(:func:`window_time_s`), the share the TMS computes from the records.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from machine_models.decay import dwell_time_factor
from machine_models.schema import AfterloaderModel, MachineModel
from simulators.core.program import DeliveryProgram, ProgramUnit, Segment, SegmentKind
from simulators.errors import RtsimError
from simulators.plans.brachy_model import (
    POSITION_TOLERANCE_MM,
    BrachyChannel,
    BrachyPlan,
    BrachyTask,
    ChannelWindow,
)

SYNTHETIC_CP = -1
SOURCE_AXIS = "source_position_mm"
CHECK_CABLE_AXIS = "check_cable_mm"
CHANNEL_AXIS = "channel"
DWELL = "dwell"
TRANSIT = "source_transit"
CHECK_CABLE = "check_cable"
INDEXER = "indexer"
PULSE_INTERVAL = "pulse_interval"
FIRST_PLAN_CP = 3  # unit control points before the plan's: safe, check cable out, check cable back


@dataclass(frozen=True, slots=True)
class PlannedUnit:
    """One channel in one pulse of the session, with the weight window it delivers."""

    pulse: int  # 1-based
    pulses: int  # pulses of the course (1 for HDR)
    channel: BrachyChannel
    window: ChannelWindow
    task: BrachyTask

    @property
    def name(self) -> str:
        label = self.channel.source_applicator_id or f"channel {self.channel.number}"
        return f"{label} pulse {self.pulse}/{self.pulses}" if self.pulses > 1 else label


def default_brachy_tasks(plan: BrachyPlan) -> list[BrachyTask]:
    """A TREATMENT task for every application setup of the first fraction group."""
    group = plan.fraction_groups[0]
    return [BrachyTask(setup_number=n, fraction_group_number=group.number) for n in group.setup_numbers]


def planned_units(plan: BrachyPlan, tasks: Sequence[BrachyTask] | None = None) -> list[PlannedUnit]:
    """The session's channels in delivery order, pulse by pulse, as the program plays them."""
    tasks = list(tasks) if tasks is not None else default_brachy_tasks(plan)
    pulses = plan.pulses
    first_pulse = min((t.continuation_pulse or 1 for t in tasks if t.is_continuation), default=1)
    units: list[PlannedUnit] = []
    for pulse in range(first_pulse, pulses + 1):
        for task in tasks:
            setup = plan.setup(task.setup_number)
            order = list(task.channel_order) if task.channel_order else [c.number for c in setup.channels]
            order += [c.number for c in setup.channels if c.number not in order]
            resuming = task.is_continuation and pulse == (task.continuation_pulse or 1)
            omitted = {n for n, _ in task.omitted_channels} if resuming else set()
            for number in order:
                channel = next(c for c in setup.channels if c.number == number)
                if number in omitted or channel.total_time_s <= 0 or channel.pulses < pulse:
                    continue
                full = ChannelWindow(0.0, channel.final_cumulative_time_weight)
                window = task.continuation.get(number, full) if resuming else full
                units.append(PlannedUnit(pulse, pulses, channel, window, task))
    return units


def decay_factor(plan: BrachyPlan, machine: MachineModel, treatment_time: datetime | None) -> float:
    """``S_plan / S_installed(treatment_time)`` for the plan's (first used) source; 1 if it gives no strength.

    Without a treatment time the plan's own strength reference date/time is used.
    """
    al = _afterloader(machine)
    used = sorted({c.source_number for c in plan.channels})
    source = plan.source(used[0]) if used else plan.sources[0]
    if source.reference_air_kerma_rate_ugy_per_h is None or source.strength_reference_datetime is None:
        return 1.0
    when = treatment_time or source.strength_reference_datetime
    return dwell_time_factor(
        source.reference_air_kerma_rate_ugy_per_h,
        al.source.reference_air_kerma_rate_ugy_per_h,
        al.source.calibration_datetime,
        al.source.half_life_days,
        when,
    )


def corrected_cumulative_time_s(channel: BrachyChannel, factor: float, resolution_s: float) -> np.ndarray:
    """Cumulative decay-corrected time at each plan control point, each interval rounded to the timer."""
    planned = np.diff(channel.cumulative_time_s)
    corrected = np.round(planned * factor / resolution_s) * resolution_s
    corrected[planned <= 0] = 0.0
    return np.concatenate([[0.0], np.cumsum(corrected)])


def build_afterloader_program(
    plan: BrachyPlan,
    machine: MachineModel,
    tasks: Sequence[BrachyTask] | None = None,
    *,
    treatment_time: datetime | None = None,
) -> DeliveryProgram:
    """The delivery program of ``tasks`` (default: the whole first fraction group) at ``treatment_time``."""
    al = _afterloader(machine)
    factor = decay_factor(plan, machine, treatment_time)
    units: list[ProgramUnit] = []
    pulse_start_s = 0.0
    elapsed_s = 0.0
    current_pulse: int | None = None
    interval = plan.pulse_repetition_interval_s or 0.0
    cache: dict[tuple[int, float, float], _ChannelBody] = {}
    for planned in planned_units(plan, tasks):
        wait_s = 0.0
        if planned.pulse != current_pulse:
            if current_pulse is not None and interval > 0:
                wait_s = max(interval - (elapsed_s - pulse_start_s), 0.0)
            current_pulse = planned.pulse
            pulse_start_s = elapsed_s + max(wait_s, al.indexer_move_s)
        unit = _channel_unit(planned, al, factor, wait_s, plan.identity.source or "plan", cache)
        units.append(unit)
        elapsed_s += unit.total_time_s
    return DeliveryProgram(
        machine_id=machine.model_id,
        device_kind=str(machine.kind),
        units=tuple(units),
        axis_noise_sd={SOURCE_AXIS: al.position_noise_sd_mm} if al.position_noise_sd_mm > 0 else {},
    )


def _afterloader(machine: MachineModel) -> AfterloaderModel:
    if machine.afterloader is None:
        raise RtsimError(f"machine {machine.model_id}: not an afterloader model (kind {machine.kind})")
    return machine.afterloader


@dataclass(frozen=True, slots=True)
class _ChannelBody:
    """Everything of a channel's unit but its first (indexer / pulse wait) segment: the same every pulse."""

    cp_plan_indices: np.ndarray
    cp_meterset: np.ndarray
    cp_positions: dict[str, np.ndarray]
    segments: tuple[Segment, ...]
    start_s: float
    end_s: float


def _channel_unit(
    planned: PlannedUnit,
    al: AfterloaderModel,
    factor: float,
    wait_s: float,
    source: str,
    cache: dict[tuple[int, float, float], _ChannelBody],
) -> ProgramUnit:
    channel = planned.channel
    key = (channel.number, planned.window.start_weight, planned.window.end_weight)
    body = cache.get(key)
    if body is None:
        body = cache[key] = _channel_body(planned, al, factor, source)
    setup = Segment(
        SegmentKind.SETUP,
        0,
        0,
        max(wait_s, al.indexer_move_s),
        0.0,
        0.0,
        PULSE_INTERVAL if wait_s > al.indexer_move_s else INDEXER,
        {INDEXER: al.indexer_move_s, PULSE_INTERVAL: wait_s},
    )
    return ProgramUnit(
        number=channel.number,
        name=planned.name,
        meterset_unit="s",
        specified_meterset=body.end_s - body.start_s,
        cp_plan_indices=body.cp_plan_indices,
        cp_meterset=body.cp_meterset,
        cp_positions=body.cp_positions,
        segments=(setup, *body.segments),
        meterset_offset=body.start_s,
    )


def _channel_body(planned: PlannedUnit, al: AfterloaderModel, factor: float, source: str) -> _ChannelBody:
    channel = planned.channel
    n = channel.control_point_count
    if channel.final_cumulative_time_weight <= 0:
        raise RtsimError(f"{source}: channel {channel.number}: Final Cumulative Time Weight is 0")
    cumulative = corrected_cumulative_time_s(channel, factor, al.dwell_time_resolution_s)
    start = window_time_s(channel, cumulative, planned.window.start_weight)
    end = window_time_s(channel, cumulative, planned.window.end_weight)
    plan_meterset = np.clip(cumulative, start, end) - start
    safe = -al.safe_to_channel_mm
    positions = [float(p) for p in channel.relative_positions_mm]
    distal = max(positions)
    source_mm = np.concatenate([[safe, safe, safe], positions, [safe]])
    cable_mm = np.full(n + 4, safe)
    cable_mm[1] = distal
    meterset = np.concatenate([[0.0, 0.0, 0.0], plan_meterset, [plan_meterset[-1]]])
    indices = np.concatenate([[SYNTHETIC_CP] * 3, channel.control_point_indices, [SYNTHETIC_CP]]).astype(int)

    speed = al.source_speed_mm_per_s
    check_s = (distal - safe) / al.check_cable_speed_mm_per_s
    segments = [
        Segment(SegmentKind.HOLD_MOVE, 0, 1, check_s, 0.0, 0.0, CHECK_CABLE, {CHECK_CABLE: check_s}),
        Segment(SegmentKind.HOLD_MOVE, 1, 2, check_s, 0.0, 0.0, CHECK_CABLE, {CHECK_CABLE: check_s}),
    ]
    out_s = (positions[0] - safe) / speed + al.dwell_settle_s
    segments.append(Segment(SegmentKind.BEAM, 2, FIRST_PLAN_CP, out_s, 0.0, 0.0, TRANSIT, {TRANSIT: out_s}))
    increments = np.diff(plan_meterset)
    for k in range(n - 1):
        a, b = FIRST_PLAN_CP + k, FIRST_PLAN_CP + k + 1
        distance = abs(positions[k + 1] - positions[k])
        travel_s = distance / speed + al.dwell_settle_s if distance > POSITION_TOLERANCE_MM else 0.0
        dwell_s = float(increments[k])
        duration = max(dwell_s, travel_s)
        rate = 60.0 * dwell_s / duration if duration > 0 else 0.0
        limiting = DWELL if dwell_s >= travel_s and dwell_s > 0 else TRANSIT
        segments.append(
            Segment(
                SegmentKind.BEAM, a, b, duration, dwell_s, rate, limiting, {DWELL: dwell_s, TRANSIT: travel_s}
            )
        )
    back_s = (positions[-1] - safe) / speed
    last = FIRST_PLAN_CP + n - 1
    segments.append(Segment(SegmentKind.BEAM, last, last + 1, back_s, 0.0, 0.0, TRANSIT, {TRANSIT: back_s}))
    positions_by_axis = {
        SOURCE_AXIS: source_mm,
        CHECK_CABLE_AXIS: cable_mm,
        CHANNEL_AXIS: np.full(n + 4, float(channel.number)),
    }
    for values in (*positions_by_axis.values(), meterset, indices):
        values.setflags(write=False)  # shared by every pulse's unit
    return _ChannelBody(indices, meterset, positions_by_axis, tuple(segments), start, end)


def window_time_s(channel: BrachyChannel, cumulative: np.ndarray, weight: float) -> float:
    """A continuation window's bound in session time: its share of the channel's weight x the corrected total.

    The share is what the TMS knows (delivered / specified channel time in the records), so a window that
    starts at ``share x final weight`` starts after ``share x total`` seconds: the records of one fraction
    then add up to the channel's time exactly (per-dwell timer rounding would otherwise leave a few 0.01 s).
    """
    final = channel.final_cumulative_time_weight
    if final <= 0:
        return 0.0
    return float(cumulative[-1]) * min(max(weight / final, 0.0), 1.0)


def time_at_weight(channel: BrachyChannel, cumulative: np.ndarray, weight: float) -> float:
    """The corrected cumulative time at a Cumulative Time Weight (linear inside a control-point interval)."""
    weights = channel.cumulative_time_weights
    final = channel.final_cumulative_time_weight
    if weight >= final * (1 - 1e-9):
        return float(cumulative[-1])
    if weight <= 0:
        return 0.0
    k = int(np.searchsorted(weights, weight, side="right")) - 1
    k = min(max(k, 0), len(weights) - 2)
    span = weights[k + 1] - weights[k]
    fraction = 0.0 if span <= 0 else (weight - weights[k]) / span
    value = cumulative[k] + fraction * (cumulative[k + 1] - cumulative[k])
    return float(value) if math.isfinite(value) else 0.0


def weight_at_time(channel: BrachyChannel, cumulative: np.ndarray, time_s: float) -> float:
    """The inverse of the corrected time: the Cumulative Time Weight reached after ``time_s`` of dwell."""
    weights = channel.cumulative_time_weights
    if time_s >= cumulative[-1] - 1e-9:
        return float(channel.final_cumulative_time_weight)
    if time_s <= 0:
        return 0.0
    k = int(np.searchsorted(cumulative, time_s, side="right")) - 1
    k = min(max(k, 0), len(weights) - 2)
    span = cumulative[k + 1] - cumulative[k]
    fraction = 0.0 if span <= 0 else (time_s - cumulative[k]) / span
    return float(weights[k] + fraction * (weights[k + 1] - weights[k]))
