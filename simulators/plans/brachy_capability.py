"""Would this afterloader deliver this brachy plan? Every reason it refuses, naming channel and control point.

A real afterloader console refuses before the source leaves the safe: a plan for another machine, or not
approved; a treatment type (HDR/PDR) the unit does not deliver; more channels than the indexer has, or a
Channel Number beyond them; a channel longer (or shorter) than the unit accepts; a dwell beyond the
channel's length; dwell positions off every step size the unit has, or spanning more step positions than a
channel may hold; a dwell time below the timer resolution or above the longest dwell; a source movement
the unit cannot make (OSCILLATING); a plan source of another isotope or half-life than the installed one,
or whose strength, decayed to the installed source's calibration date, differs from the certificate by
more than the model's tolerance; a PDR pulse that does not fit its repetition interval.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from machine_models.decay import strength_at
from machine_models.schema import AfterloaderModel, MachineModel
from simulators.plans.brachy_model import BrachyChannel, BrachyPlan, BrachyTask

STEP_TOLERANCE_MM = 0.05  # a dwell position within this of a step position is on it
HALF_LIFE_RELATIVE_TOLERANCE = 0.01
SUPPORTED_MOVEMENTS = ("STEPWISE", "FIXED", "UNIDIRECTIONAL")
_ELEMENTS = {
    "IRIDIUM": "IR",
    "COBALT": "CO",
    "IODINE": "I",
    "PALLADIUM": "PD",
    "CESIUM": "CS",
    "CAESIUM": "CS",
    "YTTERBIUM": "YB",
    "SELENIUM": "SE",
}


def normalize_isotope(name: str) -> str:
    """``"Ir-192"``, ``"IR192"``, ``"Iridium 192"``, ``"192Ir"`` -> ``"IR192"`` (symbol + mass number)."""
    text = re.sub(r"[^A-Za-z0-9]", "", name).upper()
    letters = "".join(c for c in text if c.isalpha())
    digits = "".join(c for c in text if c.isdigit())
    return _ELEMENTS.get(letters, letters) + digits


def channel_step_mm(channel: BrachyChannel, allowed: Sequence[float]) -> float | None:
    """The step size the channel's dwell positions lie on: the plan's, else the largest allowed one that fits.

    None when no allowed step size fits every dwell position (measured from the most distal dwell).
    """
    positions = [d.position_mm for d in channel.dwells()]
    if not positions:
        return channel.step_size_mm or (max(allowed) if allowed else None)
    tip = max(positions)
    candidates = [channel.step_size_mm] if channel.step_size_mm else sorted(allowed, reverse=True)
    for step in candidates:
        if step and all(_on_step(tip - p, step) for p in positions):
            return step
    return None


def _on_step(offset_mm: float, step_mm: float) -> bool:
    return abs(offset_mm / step_mm - round(offset_mm / step_mm)) * step_mm <= STEP_TOLERANCE_MM


def check_brachy_plan(
    plan: BrachyPlan, machine: MachineModel, *, answers_to: str, require_approved: bool = True
) -> list[str]:
    """Every reason ``machine`` refuses ``plan`` (an empty list when it would deliver it)."""
    src = plan.identity.source or "plan"
    al = machine.afterloader
    if al is None:
        return [f"{src}: machine {machine.model_id} is not an afterloader (kind {machine.kind})"]
    reasons: list[str] = []
    if plan.treatment_machine_name and plan.treatment_machine_name != answers_to:
        reasons.append(
            f"{src}: Treatment Machine Name (300A,00B2) is {plan.treatment_machine_name!r}, "
            f"this machine is {answers_to!r}"
        )
    if require_approved and plan.identity.approval_status != "APPROVED":
        status = plan.identity.approval_status or "absent"
        reasons.append(f"{src}: Approval Status (300E,0002) is {status}, not APPROVED")
    if plan.treatment_type not in al.treatment_types:
        reasons.append(
            f"{src}: Brachy Treatment Type (300A,0202) {plan.treatment_type or 'absent'!r}: "
            f"this unit delivers {'/'.join(al.treatment_types)} only"
        )
    channels = plan.channels
    if len(channels) > al.channel_count:
        reasons.append(f"{src}: {len(channels)} channels, the indexer has {al.channel_count}")
    reasons += _check_sources(plan, al, src)
    for channel in channels:
        reasons += _check_channel(channel, al, src)
    if plan.treatment_type == "PDR":
        reasons += _check_pulses(plan, al, src)
    return reasons


def _check_sources(plan: BrachyPlan, al: AfterloaderModel, src: str) -> list[str]:
    reasons = []
    installed = al.source
    used = {c.source_number for c in plan.channels}
    for source in plan.sources:
        if source.number not in used:
            continue
        where = f"{src}: source {source.number}"
        if normalize_isotope(source.isotope) != normalize_isotope(installed.isotope):
            reasons.append(
                f"{where}: Source Isotope Name (300A,0226) {source.isotope or 'absent'!r} differs from the "
                f"installed {installed.isotope} source (serial {installed.serial_number})"
            )
            continue
        half_life = source.half_life_days
        if half_life is not None and not math.isclose(
            half_life, installed.half_life_days, rel_tol=HALF_LIFE_RELATIVE_TOLERANCE
        ):
            reasons.append(
                f"{where}: Source Isotope Half Life (300A,0228) {half_life:g} d differs from the installed "
                f"source's {installed.half_life_days:g} d"
            )
        rakr, when = source.reference_air_kerma_rate_ugy_per_h, source.strength_reference_datetime
        if rakr is None or rakr <= 0 or when is None:
            reasons.append(
                f"{where}: Reference Air Kerma Rate (300A,022A) and Source Strength Reference Date "
                "(300A,022C) are needed to correct dwell times for decay"
            )
            continue
        at_calibration = strength_at(rakr, when, installed.half_life_days, installed.calibration_datetime)
        difference = 100.0 * (at_calibration / installed.reference_air_kerma_rate_ugy_per_h - 1.0)
        if abs(difference) > al.source_strength_tolerance_percent:
            reasons.append(
                f"{where}: Reference Air Kerma Rate (300A,022A) {rakr:g} uGy/h at {when.isoformat()} is "
                f"{at_calibration:.6g} uGy/h at the installed source's calibration "
                f"({installed.calibration_datetime.isoformat()}), {difference:+.1f} % from its "
                f"{installed.reference_air_kerma_rate_ugy_per_h:g} uGy/h (tolerance "
                f"{al.source_strength_tolerance_percent:g} %): another source?"
            )
    return reasons


def _check_channel(channel: BrachyChannel, al: AfterloaderModel, src: str) -> list[str]:
    where = f"{src}: application setup {channel.setup_number}, channel {channel.number}"
    reasons = []
    if not 1 <= channel.number <= al.channel_count:
        reasons.append(
            f"{where}: Channel Number (300A,0282) {channel.number} is not in 1..{al.channel_count}"
        )
    if channel.source_movement_type not in SUPPORTED_MOVEMENTS:
        reasons.append(
            f"{where}: Source Movement Type (300A,0288) {channel.source_movement_type} is not supported "
            f"(this unit moves {', '.join(SUPPORTED_MOVEMENTS)})"
        )
    length = channel.length_mm
    if length is not None and not al.min_channel_length_mm <= length <= al.max_channel_length_mm:
        reasons.append(
            f"{where}: Channel Length (300A,0284) {length:g} mm is outside "
            f"{al.min_channel_length_mm:g}..{al.max_channel_length_mm:g} mm"
        )
    reach = length if length is not None else al.max_channel_length_mm
    for row, position in enumerate(channel.relative_positions_mm):
        if not 0.0 <= position <= reach + STEP_TOLERANCE_MM:
            reasons.append(
                f"{where}, control point {int(channel.control_point_indices[row])}: Control Point Relative "
                f"Position (300A,02D2) {position:g} mm is outside the channel (0..{reach:g} mm)"
            )
            break
    dwells = channel.dwells()
    if channel.step_size_mm is not None and not any(
        math.isclose(channel.step_size_mm, s, abs_tol=1e-6) for s in al.step_sizes_mm
    ):
        reasons.append(
            f"{where}: Source Applicator Step Size (300A,02A0) {channel.step_size_mm:g} mm is not one of the "
            f"unit's step sizes ({', '.join(f'{s:g}' for s in al.step_sizes_mm)} mm)"
        )
    elif dwells:
        step = channel_step_mm(channel, al.step_sizes_mm)
        if step is None:
            reasons.append(
                f"{where}: dwell positions {', '.join(f'{d.position_mm:g}' for d in dwells[:6])} mm lie on "
                f"none of the unit's step sizes ({', '.join(f'{s:g}' for s in al.step_sizes_mm)} mm)"
            )
        else:
            tip = max(d.position_mm for d in dwells)
            span = round((tip - min(d.position_mm for d in dwells)) / step) + 1
            if span > al.max_dwell_positions_per_channel or len(dwells) > al.max_dwell_positions_per_channel:
                reasons.append(
                    f"{where}: dwell positions span {span} steps of {step:g} mm "
                    f"({len(dwells)} dwells); a channel holds at most {al.max_dwell_positions_per_channel}"
                )
    for dwell in dwells:
        cp = int(channel.control_point_indices[dwell.end_row])
        if dwell.time_s < al.dwell_time_resolution_s - 1e-9:
            reasons.append(
                f"{where}, control point {cp}: dwell time {dwell.time_s:.3g} s at {dwell.position_mm:g} mm "
                f"is below the timer resolution {al.dwell_time_resolution_s:g} s"
            )
        elif al.max_dwell_time_s is not None and dwell.time_s > al.max_dwell_time_s:
            reasons.append(
                f"{where}, control point {cp}: dwell time {dwell.time_s:.4g} s at {dwell.position_mm:g} mm "
                f"is above the longest dwell {al.max_dwell_time_s:g} s"
            )
    return reasons


def _check_pulses(plan: BrachyPlan, al: AfterloaderModel, src: str) -> list[str]:
    reasons = []
    for channel in plan.channels:
        where = f"{src}: application setup {channel.setup_number}, channel {channel.number}"
        if not channel.number_of_pulses:
            reasons.append(f"{where}: Number of Pulses (300A,028A) is required for a PDR plan")
        if not channel.pulse_repetition_interval_s:
            reasons.append(f"{where}: Pulse Repetition Interval (300A,028C) is required for a PDR plan")
    interval = plan.pulse_repetition_interval_s
    if interval:
        # the source time alone must fit; transit and check cable runs are added by the program builder
        pulse_s = sum(c.total_time_s for c in plan.channels)
        if pulse_s >= interval:
            reasons.append(
                f"{src}: one pulse needs {pulse_s:.1f} s of dwell time, more than the Pulse Repetition "
                f"Interval (300A,028C) {interval:g} s"
            )
    return reasons


def check_brachy_tasks(plan: BrachyPlan, tasks: Sequence[BrachyTask]) -> list[str]:
    """Every reason the delivery instruction's tasks do not fit the plan."""
    src = plan.identity.source or "plan"
    reasons = []
    for task in tasks:
        try:
            setup = plan.setup(task.setup_number)
        except KeyError:
            known = ", ".join(str(s.number) for s in plan.setups)
            reasons.append(
                f"{src}: delivery instruction names application setup {task.setup_number}, "
                f"the plan has {known}"
            )
            continue
        numbers = {c.number for c in setup.channels}
        named = set(task.continuation) | {n for n, _ in task.omitted_channels} | set(task.channel_order or ())
        for number in sorted(named - numbers):
            reasons.append(
                f"{src}: delivery instruction names channel {number}, not in application setup {setup.number}"
            )
        for number, window in sorted(task.continuation.items()):
            if number not in numbers:
                continue
            final = plan.channel(number).final_cumulative_time_weight
            if not 0.0 <= window.start_weight < window.end_weight <= final * (1 + 1e-6) + 1e-9:
                reasons.append(
                    f"{src}: channel {number}: Start/End Cumulative Time Weight {window.start_weight:g}/"
                    f"{window.end_weight:g} not within 0..{final:g} with start < end"
                )
        if task.continuation_pulse is not None and not 1 <= task.continuation_pulse <= plan.pulses:
            reasons.append(
                f"{src}: Continuation Pulse Number (0074,1404) {task.continuation_pulse} "
                f"is not in 1..{plan.pulses}"
            )
    return reasons
