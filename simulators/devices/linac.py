"""C-arm linac: typed plan -> :class:`DeliveryProgram` (segments with durations, rates, limiting axes).

The timing model is :mod:`machine_models.kinematics`; this module only decides what moves when:

* Beam order is the order of the beam tasks (default: every beam of the first fraction group, in plan
  order; beams with a zero meterset are kept, they are only motion).
* Each unit starts with a SETUP segment (beam off) moving every axis from the previous unit's last
  control point to this unit's first (rest-to-rest, the shorter way round for rotations). The very first
  unit's SETUP takes 0 s: the therapist sets the machine up at control point 0.
* Then one segment per control-point interval, timed together so that axes moving through several
  control points are not stopped at each one: BEAM where the meterset grows, HOLD_MOVE where it does
  not (step-and-shoot leaf moves with the beam held, wedge changes). Dose Rate Set of control point i
  caps segment i -> i+1. ``beam_on_startup_s`` of the model is added once per unit, to its first BEAM
  segment (its rate stays the servo rate).
* Primary Dosimeter Unit MINUTE: the meterset is in minutes, the rate 1 minute per minute, and
  ``ProgramUnit.meterset_unit`` is ``"MINUTE"``.

Positions (``ProgramUnit.cp_positions``): ``gantry_deg``, ``collimator_deg``, ``couch_deg`` (n,),
``table_top_vertical_mm``, ``table_top_longitudinal_mm``, ``table_top_lateral_mm`` (n,) (NaN where the
plan gives none: no motion), ``jaw_x_mm``/``jaw_y_mm`` (n, 2) and ``mlc_mm`` (n, 2, pairs) when the beam
has them. **Rotation angles are unwrapped**: consecutive values differ by the signed rotation the machine
really makes (plan direction, PS3.3 C.8.8.14.8), so linear interpolation follows the right path; the first
value continues from the previous unit the shorter way. Take ``value % 360`` for an IEC angle.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from machine_models.kinematics import (
    DOSE,
    INCREASING_DIRECTION,
    AxisMotion,
    SegmentTiming,
    elekta_bins_per_min,
    rotation_delta_deg,
    segment_timing,
    shortest_rotation_deg,
)
from machine_models.schema import AxisLimits, DoseRateServo, Energy, LinacModel, MachineModel
from simulators.core.program import DeliveryProgram, ProgramUnit, Segment, SegmentKind
from simulators.errors import RtsimError
from simulators.plans.model import BeamTask, LinacBeam, LinacPlan

CONTINUATION = "CONTINUATION"
METERSET_TOLERANCE_MU = 1e-3
ROTATION_KEYS = ("gantry_deg", "collimator_deg", "couch_deg")
TABLE_KEYS = ("table_top_vertical_mm", "table_top_longitudinal_mm", "table_top_lateral_mm")


def build_linac_program(
    plan: LinacPlan, machine: MachineModel, beam_tasks: Sequence[BeamTask] | None = None
) -> DeliveryProgram:
    """The delivery program for ``beam_tasks`` of ``plan`` on ``machine`` (see the module docstring).

    Continuation convention (a task with ``delivery_type == "CONTINUATION"``, start S and end E in beam
    meterset terms; S defaults to 0, E to the beam meterset):

    * ``cp_meterset[k] = clip(M[k], S, E) - S`` where ``M`` is the plan's cumulative meterset: the
      cumulative meterset *of this session*, from 0 to ``E - S``.
    * ``meterset_offset = S`` and ``specified_meterset = E - S``.
    * Every plan control point stays in the unit. Segments before S deliver nothing and become HOLD_MOVE
      (beam-off moves along the plan path to where delivery resumes); the segment containing S delivers
      only its remainder; segments after E are beam-off moves too.
    * So the record's per-control-point Delivered Meterset in beam terms is
      ``offset + delivered session meterset = MAX(S, MIN(SpecMS, E))`` (PS3.3 C.8.8.21.2.2), and the
      session's Delivered Primary Meterset is the delivered session meterset (``E - S`` when complete).

    For a normal TREATMENT, ``cp_meterset`` is the plan's cumulative meterset, offset 0, specified = Beam
    Meterset. Raises :class:`RtsimError` naming the plan, beam and attribute when a task names an unknown
    beam, continuation bounds are outside the beam, or the beam's energy is not installed.
    """
    linac = machine.linac
    if linac is None:
        raise RtsimError(f"machine {machine.model_id}: not a linac model (kind {machine.kind})")
    tasks = list(beam_tasks) if beam_tasks is not None else default_beam_tasks(plan)
    units: list[ProgramUnit] = []
    previous_end: dict[str, np.ndarray] | None = None
    for task in tasks:
        try:
            beam = plan.beam(task.beam_number)
        except KeyError:
            numbers = ", ".join(str(b.number) for b in plan.beams)
            raise RtsimError(
                f"{plan.identity.source}: beam task for beam {task.beam_number}, but the plan has beams "
                f"{numbers}"
            ) from None
        unit = _build_unit(plan, beam, task, linac, previous_end)
        units.append(unit)
        previous_end = {key: np.asarray(value)[-1] for key, value in unit.cp_positions.items()}
    return DeliveryProgram(
        machine_id=machine.model_id,
        device_kind=str(machine.kind),
        units=tuple(units),
        axis_noise_sd=axis_noise_sd(linac),
    )


def default_beam_tasks(plan: LinacPlan) -> list[BeamTask]:
    """One TREATMENT task per beam of the first fraction group, in plan order (all beams if none)."""
    if not plan.fraction_groups:
        return [BeamTask(beam_number=b.number) for b in plan.beams]
    group = plan.fraction_groups[0]
    return [
        BeamTask(beam_number=b.number, fraction_group_number=group.number)
        for b in plan.beams
        if b.number in group.beam_metersets_mu
    ]


def axis_noise_sd(linac: LinacModel) -> dict[str, float]:
    """Noise standard deviation per ``cp_positions`` key, from the model."""
    noise = dict.fromkeys(ROTATION_KEYS, linac.angle_noise_sd_deg)
    noise.update(dict.fromkeys(TABLE_KEYS, linac.couch_noise_sd_mm))
    noise["jaw_x_mm"] = linac.jaw_noise_sd_mm
    noise["jaw_y_mm"] = linac.jaw_noise_sd_mm
    noise["mlc_mm"] = linac.mlc.position_noise_sd_mm if linac.mlc is not None else 0.0
    return noise


def find_energy(beam: LinacBeam, linac: LinacModel, where: str) -> Energy:
    """The installed energy matching the beam's radiation type, nominal energy and fluence mode."""
    wanted_mode = _fluence_mode(beam.fluence_mode_id)
    for energy in linac.energies:
        if (
            energy.radiation_type.upper() == beam.radiation_type.upper()
            and abs(energy.nominal_energy_mev - beam.nominal_energy_mev) < 1e-3
            and _fluence_mode(energy.fluence_mode_id) == wanted_mode
        ):
            return energy
    installed = ", ".join(e.label for e in linac.energies) or "none"
    mode = f" {wanted_mode}" if wanted_mode else ""
    raise RtsimError(
        f"{where}: Nominal Beam Energy (300A,0114) {beam.nominal_energy_mev:g} MeV {beam.radiation_type}"
        f"{mode} is not installed on this machine (installed: {installed})"
    )


def _fluence_mode(mode: str | None) -> str | None:
    mode = (mode or "").strip().upper()
    return None if mode in ("", "STANDARD") else mode


def _where(plan: LinacPlan, beam: LinacBeam) -> str:
    return f"{plan.identity.source}: beam {beam.number} ({beam.name})"


def _session_meterset(beam: LinacBeam, task: BeamTask, where: str) -> tuple[np.ndarray, float, float]:
    """(cp_meterset for this session, meterset_offset, specified_meterset)."""
    plan_cumulative = np.asarray(beam.cumulative_meterset_mu, dtype=float)
    total = float(beam.beam_meterset_mu)
    if task.delivery_type.upper() != CONTINUATION:
        return plan_cumulative.copy(), 0.0, total
    start = 0.0 if task.start_meterset_mu is None else float(task.start_meterset_mu)
    end = total if task.end_meterset_mu is None else float(task.end_meterset_mu)
    if total < end <= total + METERSET_TOLERANCE_MU:
        end = total
    if not 0.0 <= start < end <= total:
        raise RtsimError(
            f"{where}: Continuation Start Meterset (0074,0120) {start:g} and End Meterset (0074,0121) "
            f"{end:g} must satisfy 0 <= start < end <= Beam Meterset {total:g}"
        )
    return np.clip(plan_cumulative, start, end) - start, start, end - start


def _rotation_positions(
    angles_deg: np.ndarray, directions: Sequence[str], increasing: str, previous_deg: float | None
) -> np.ndarray:
    """Unwrapped angles: start near ``previous_deg`` (shorter way), then follow the plan directions."""
    angles = np.asarray(angles_deg, dtype=float)
    first = float(angles[0])
    if previous_deg is not None and np.isfinite(previous_deg):
        first = float(previous_deg + shortest_rotation_deg(previous_deg, first))
    deltas = rotation_delta_deg(angles[:-1], angles[1:], list(directions[:-1]), increasing)
    return first + np.concatenate([[0.0], np.cumsum(deltas)])


def _positions(beam: LinacBeam, previous: Mapping[str, np.ndarray] | None) -> dict[str, np.ndarray]:
    prev = previous or {}
    positions = {
        "gantry_deg": _rotation_positions(
            beam.gantry_deg, beam.gantry_direction, INCREASING_DIRECTION["gantry"], prev.get("gantry_deg")
        ),
        "collimator_deg": _rotation_positions(
            beam.collimator_deg,
            beam.collimator_direction,
            INCREASING_DIRECTION["collimator"],
            prev.get("collimator_deg"),
        ),
        "couch_deg": _rotation_positions(
            beam.couch_deg, beam.couch_direction, INCREASING_DIRECTION["couch"], prev.get("couch_deg")
        ),
        "table_top_vertical_mm": np.asarray(beam.table_top_vertical_mm, dtype=float),
        "table_top_longitudinal_mm": np.asarray(beam.table_top_longitudinal_mm, dtype=float),
        "table_top_lateral_mm": np.asarray(beam.table_top_lateral_mm, dtype=float),
    }
    if beam.jaw_x_mm is not None:
        positions["jaw_x_mm"] = np.asarray(beam.jaw_x_mm, dtype=float)
    if beam.jaw_y_mm is not None:
        positions["jaw_y_mm"] = np.asarray(beam.jaw_y_mm, dtype=float)
    if beam.mlc_mm is not None:
        positions["mlc_mm"] = np.asarray(beam.mlc_mm, dtype=float)
    return positions


def _axis(limits: AxisLimits) -> tuple[float, float | None]:
    return limits.max_speed_per_s, limits.max_accel_per_s2


def _jaw_limits(linac: LinacModel, device_type: str | None, where: str) -> tuple[float, float | None]:
    for jaw in linac.jaws:
        if device_type in jaw.device_types:
            return jaw.max_speed_mm_per_s, jaw.max_accel_mm_per_s2
    raise RtsimError(
        f"{where}: RT Beam Limiting Device Type (300A,00B8) {device_type} has no jaw model on this machine"
    )


def _motions(
    deltas: Mapping[str, np.ndarray],
    beam: LinacBeam,
    linac: LinacModel,
    where: str,
) -> list[AxisMotion]:
    """Axis motions for per-segment deltas keyed like ``cp_positions`` (NaN = no motion)."""
    n = next(iter(deltas.values())).shape[0]
    limits: dict[str, tuple[str, tuple[float, float | None]]] = {
        "gantry_deg": ("gantry", _axis(linac.gantry)),
        "collimator_deg": ("collimator", _axis(linac.collimator)),
        "couch_deg": ("couch", _axis(linac.couch_rotation)),
        "table_top_vertical_mm": ("couch", _axis(linac.couch_vertical)),
        "table_top_longitudinal_mm": ("couch", _axis(linac.couch_longitudinal)),
        "table_top_lateral_mm": ("couch", _axis(linac.couch_lateral)),
    }
    motions = []
    for key, delta in deltas.items():
        if key in limits:
            group, (speed, accel) = limits[key]
        elif key == "jaw_x_mm":
            group, (speed, accel) = "jaw_x", _jaw_limits(linac, beam.jaw_x_device_type, where)
        elif key == "jaw_y_mm":
            group, (speed, accel) = "jaw_y", _jaw_limits(linac, beam.jaw_y_device_type, where)
        elif key == "mlc_mm":
            if linac.mlc is None:
                raise RtsimError(f"{where}: the beam has an MLC but this machine has none")
            group, speed, accel = "mlc", linac.mlc.max_leaf_speed_mm_per_s, linac.mlc.max_leaf_accel_mm_per_s2
        else:
            continue
        motions.append(AxisMotion(group, np.asarray(delta, dtype=float).reshape(n, -1), speed, accel))
    return motions


def _rate_limits(
    beam: LinacBeam, energy: Energy, linac: LinacModel
) -> tuple[float, tuple[float, ...] | None]:
    """(max rate per minute, bins or None) for the beam's meterset unit."""
    if beam.primary_dosimeter_unit.upper() == "MINUTE":
        return 1.0, None
    if linac.dose_rate_servo is DoseRateServo.BINNED:
        bins = energy.dose_rate_bins_mu_per_min or elekta_bins_per_min(
            energy.max_dose_rate_mu_per_min, energy.min_dose_rate_mu_per_min
        )
        return energy.max_dose_rate_mu_per_min, tuple(bins)
    return energy.max_dose_rate_mu_per_min, None


def _segments(
    kinds: Sequence[SegmentKind], start: int, timing: SegmentTiming, dmeter: Sequence[float]
) -> list[Segment]:
    """One Segment per row of ``timing`` (segment i runs from control point start + i to start + i + 1)."""
    durations, rates = timing.duration_s.tolist(), timing.beam_rate_per_min.tolist()
    names = list(timing.axis_times_s)
    axis_rows = zip(*(timing.axis_times_s[name].tolist() for name in names), strict=True)
    return [
        Segment(
            kind=kind,
            start_cp=start + i,
            end_cp=start + i + (kind is not SegmentKind.SETUP),
            duration_s=durations[i],
            meterset_delta=dmeter[i],
            beam_rate_per_min=rates[i] if dmeter[i] > 0 else 0.0,
            limiting_axis=timing.limiting_axis[i],
            axis_times_s=dict(zip(names, axis_row, strict=True)),
        )
        for i, (kind, axis_row) in enumerate(zip(kinds, axis_rows, strict=True))
    ]


def _setup_segment(
    positions: Mapping[str, np.ndarray],
    previous: Mapping[str, np.ndarray] | None,
    beam: LinacBeam,
    linac: LinacModel,
    where: str,
) -> Segment:
    """Beam-off move from the previous unit's last position to control point 0 (0 s for the first unit)."""
    deltas: dict[str, np.ndarray] = {}
    for key, values in positions.items():
        start = np.asarray(values)[0]
        if previous is not None and key in previous and np.shape(previous[key]) == np.shape(start):
            deltas[key] = (start - previous[key])[np.newaxis, ...]
        else:
            deltas[key] = np.zeros((1, *np.shape(start)))
    timing = segment_timing(_motions(deltas, beam, linac, where), np.zeros(1), 1.0)
    (segment,) = _segments([SegmentKind.SETUP], 0, timing, [0.0])
    return segment


def _build_unit(
    plan: LinacPlan,
    beam: LinacBeam,
    task: BeamTask,
    linac: LinacModel,
    previous: Mapping[str, np.ndarray] | None,
) -> ProgramUnit:
    where = _where(plan, beam)
    energy = find_energy(beam, linac, where)
    cp_meterset, offset, specified = _session_meterset(beam, task, where)
    positions = _positions(beam, previous)
    n = cp_meterset.shape[0]
    is_minutes = beam.primary_dosimeter_unit.upper() == "MINUTE"
    max_rate, bins = _rate_limits(beam, energy, linac)

    segments = [_setup_segment(positions, previous, beam, linac, where)]
    if n >= 2:
        dmeter = np.maximum(np.diff(cp_meterset), 0.0)
        deltas = {key: np.diff(values, axis=0) for key, values in positions.items()}
        rate_set = None if is_minutes else np.asarray(beam.dose_rate_set_mu_per_min, dtype=float)[:-1]
        timing = segment_timing(
            _motions(deltas, beam, linac, where),
            dmeter,
            max_rate,
            rate_set_per_min=rate_set,
            rate_bins_per_min=bins,
        )
        deltas_mu = dmeter.tolist()
        kinds = [SegmentKind.BEAM if delta > 0 else SegmentKind.HOLD_MOVE for delta in deltas_mu]
        beam_segments = _segments(kinds, 0, timing, deltas_mu)
        first_beam = next((i for i, kind in enumerate(kinds) if kind is SegmentKind.BEAM), None)
        if first_beam is not None and linac.beam_on_startup_s > 0:
            beam_segments[first_beam] = _with_startup(beam_segments[first_beam], linac.beam_on_startup_s)
        segments.extend(beam_segments)

    return ProgramUnit(
        number=beam.number,
        name=beam.name,
        meterset_unit="MINUTE" if is_minutes else "MU",
        specified_meterset=specified,
        cp_plan_indices=np.asarray(beam.control_point_indices),
        cp_meterset=cp_meterset,
        cp_positions=positions,
        segments=tuple(segments),
        meterset_offset=offset,
    )


def _with_startup(segment: Segment, startup_s: float) -> Segment:
    """The segment with the beam start-up time added to it and to its dose time (rate unchanged)."""
    times = dict(segment.axis_times_s)
    times[DOSE] = times.get(DOSE, 0.0) + startup_s
    limiting = max(times, key=lambda k: times[k])
    return Segment(
        kind=segment.kind,
        start_cp=segment.start_cp,
        end_cp=segment.end_cp,
        duration_s=segment.duration_s + startup_s,
        meterset_delta=segment.meterset_delta,
        beam_rate_per_min=segment.beam_rate_per_min,
        limiting_axis=limiting,
        axis_times_s=times,
    )
