"""Linac program builder: plan + machine -> segments with worked durations (simulators.devices.linac)."""

from __future__ import annotations

import dataclasses
import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from machine_models.loader import load_model
from machine_models.schema import (
    AxisLimits,
    DeviceKind,
    DoseRateServo,
    Energy,
    JawModel,
    LinacModel,
    MachineModel,
    MlcModel,
)
from simulators.core.program import SegmentKind
from simulators.devices.linac import build_linac_program, default_beam_tasks
from simulators.errors import RtsimError
from simulators.plans.model import (
    BeamTask,
    BeamTechnique,
    FractionGroup,
    LinacBeam,
    LinacPlan,
    PatientStudy,
    PlanIdentity,
)

PAIRS = 60
BOUNDARIES = tuple([-200.0 + 10 * i for i in range(10)] + [-100.0 + 5 * i for i in range(40)]) + tuple(
    100.0 + 10 * i for i in range(11)
)


def make_machine(
    *,
    mlc_accel: float | None = None,
    gantry_accel: float | None = None,
    servo: DoseRateServo = DoseRateServo.CONTINUOUS,
    startup_s: float = 0.0,
) -> MachineModel:
    """A TrueBeam-like machine with round numbers: gantry 6 deg/s, leaves and jaws 25 mm/s."""

    def rotation(name: str, speed: float, accel: float | None = None) -> AxisLimits:
        return AxisLimits(name, "deg", 0.0, 360.0, speed, accel, circular=True)

    def translation(name: str) -> AxisLimits:
        return AxisLimits(name, "mm", -1000.0, 1000.0, 10.0)

    bins = (600.0, 300.0, 150.0, 75.0) if servo is DoseRateServo.BINNED else None
    linac = LinacModel(
        gantry=rotation("gantry", 6.0, gantry_accel),
        collimator=rotation("collimator", 9.0),
        couch_rotation=rotation("couch_rotation", 3.0),
        couch_vertical=translation("couch_vertical"),
        couch_longitudinal=translation("couch_longitudinal"),
        couch_lateral=translation("couch_lateral"),
        jaws=(
            JawModel(("X", "ASYMX"), -200.0, 200.0, 20.0, 25.0),
            JawModel(("Y", "ASYMY"), -200.0, 200.0, 100.0, 25.0),
        ),
        mlc=MlcModel("MLCX", PAIRS, BOUNDARIES, -200.0, 200.0, 140.0, 0.0, True, 25.0, mlc_accel, 0.03),
        energies=(
            Energy("6X", "PHOTON", 6.0, None, 600.0, dose_rate_bins_mu_per_min=bins),
            Energy("6FFF", "PHOTON", 6.0, "FFF", 1400.0, dose_rate_bins_mu_per_min=bins),
            Energy("12E", "ELECTRON", 12.0, None, 1000.0, dose_rate_bins_mu_per_min=bins),
        ),
        dose_rate_servo=servo,
        beam_on_startup_s=startup_s,
        angle_noise_sd_deg=0.1,
        jaw_noise_sd_mm=0.2,
        couch_noise_sd_mm=0.3,
    )
    return MachineModel(
        1, "test-truebeam", DeviceKind.LINAC, "Test", "TrueBeam", "TB1", "", None, linac=linac
    )


def make_beam(
    number: int = 1,
    *,
    meterset_mu: float = 100.0,
    weights: list[float] | None = None,
    gantry_deg: list[float] | None = None,
    gantry_direction: str = "NONE",
    mlc_mm: np.ndarray | None = None,
    jaw_y_mm: np.ndarray | None = None,
    dose_rate_set: list[float] | None = None,
    radiation_type: str = "PHOTON",
    energy_mev: float = 6.0,
    fluence_mode_id: str | None = None,
    unit: str = "MU",
    couch_deg: list[float] | None = None,
) -> LinacBeam:
    """A beam with ``n`` control points; unspecified axes stay still."""
    weights = [0.0, 1.0] if weights is None else weights
    n = len(weights)
    cmw = np.asarray(weights, dtype=float)
    gantry = np.asarray(gantry_deg if gantry_deg is not None else [0.0] * n, dtype=float)
    couch = np.asarray(couch_deg if couch_deg is not None else [0.0] * n, dtype=float)
    jaw_x = np.tile([-50.0, 50.0], (n, 1))
    jaw_y = jaw_y_mm if jaw_y_mm is not None else np.tile([-50.0, 50.0], (n, 1))
    drs = np.asarray(dose_rate_set if dose_rate_set is not None else [math.nan] * n, dtype=float)
    return LinacBeam(
        number=number,
        name=f"Beam{number}",
        description="",
        beam_type="DYNAMIC" if n > 2 else "STATIC",
        radiation_type=radiation_type,
        technique=BeamTechnique.STATIC,
        treatment_machine_name="TB1",
        primary_dosimeter_unit=unit,
        source_axis_distance_mm=1000.0,
        treatment_delivery_type="TREATMENT",
        beam_meterset_mu=meterset_mu,
        final_cumulative_meterset_weight=float(cmw[-1]) or 1.0,
        nominal_energy_mev=energy_mev,
        fluence_mode_id=fluence_mode_id,
        device_pair_counts={"ASYMX": 1, "ASYMY": 1, "MLCX": PAIRS}
        if mlc_mm is not None
        else {"ASYMX": 1, "ASYMY": 1},
        mlc_device_type="MLCX" if mlc_mm is not None else None,
        mlc_leaf_boundaries_mm=BOUNDARIES if mlc_mm is not None else None,
        wedges=(),
        applicator_id=None,
        applicator_type=None,
        number_of_compensators=0,
        number_of_boli=0,
        number_of_blocks=0,
        referenced_patient_setup_number=1,
        referenced_tolerance_table_number=None,
        control_point_indices=np.arange(n),
        cumulative_meterset_weight=cmw,
        cumulative_meterset_mu=meterset_mu * cmw / (float(cmw[-1]) or 1.0),
        dose_rate_set_mu_per_min=drs,
        gantry_deg=gantry,
        gantry_direction=(gantry_direction,) * n,
        collimator_deg=np.zeros(n),
        collimator_direction=("NONE",) * n,
        couch_deg=couch,
        couch_direction=("NONE",) * n,
        table_top_vertical_mm=np.full(n, math.nan),
        table_top_longitudinal_mm=np.full(n, math.nan),
        table_top_lateral_mm=np.full(n, math.nan),
        jaw_x_mm=jaw_x,
        jaw_x_device_type="ASYMX",
        jaw_y_mm=np.asarray(jaw_y, dtype=float),
        jaw_y_device_type="ASYMY",
        mlc_mm=None if mlc_mm is None else np.asarray(mlc_mm, dtype=float),
        wedge_in=np.zeros((n, 0), dtype=bool),
    )


def make_plan(*beams: LinacBeam, group_beams: list[int] | None = None) -> LinacPlan:
    numbers = group_beams if group_beams is not None else [b.number for b in beams]
    metersets = {b.number: b.beam_meterset_mu for b in beams if b.number in numbers}
    patient = PatientStudy("Test^Patient", "P1", "", "", "1.2.3", "1", "", "", "", "", None)
    identity = PlanIdentity(
        "1.2.840.10008.5.1.4.1.1.481.5", "1.2.3.4", "TEST", "", "APPROVED", "test.dcm", patient
    )
    return LinacPlan(identity, (FractionGroup(1, 1, metersets),), tuple(beams), "HFS")


def open_leaves(n: int, half_width_mm: float = 20.0) -> np.ndarray:
    leaves = np.zeros((n, 2, PAIRS))
    leaves[:, 0, :] = -half_width_mm
    leaves[:, 1, :] = half_width_mm
    return leaves


def beam_segments(program, unit_index: int = 0):
    return program.units[unit_index].segments[1:]


# --- worked numbers ---------------------------------------------------------------------------------


def test_static_100_mu_6x_beam_takes_10_s():
    program = build_linac_program(make_plan(make_beam(meterset_mu=100.0)), make_machine())
    unit = program.units[0]
    assert [s.kind for s in unit.segments] == [SegmentKind.SETUP, SegmentKind.BEAM]
    setup, beam = unit.segments
    assert setup.duration_s == 0.0  # the therapist sets up the first beam
    assert beam.duration_s == pytest.approx(10.0)
    assert beam.beam_rate_per_min == pytest.approx(600.0)
    assert beam.limiting_axis == "dose"
    assert unit.total_time_s == pytest.approx(10.0)
    assert unit.meterset_unit == "MU"
    assert unit.specified_meterset == pytest.approx(100.0)


def test_beam_on_startup_is_added_once_per_beam():
    plan = make_plan(make_beam(meterset_mu=100.0, weights=[0.0, 0.5, 1.0], mlc_mm=open_leaves(3)))
    program = build_linac_program(plan, make_machine(startup_s=0.3))
    durations = [s.duration_s for s in beam_segments(program)]
    assert durations == pytest.approx([5.3, 5.0])
    assert beam_segments(program)[0].beam_rate_per_min == pytest.approx(600.0)


def test_electron_beam_uses_the_electron_dose_rate():
    beam = make_beam(meterset_mu=200.0, radiation_type="ELECTRON", energy_mev=12.0)
    program = build_linac_program(make_plan(beam), make_machine())
    assert program.units[0].total_time_s == pytest.approx(12.0)  # 200 MU at 1000 MU/min


def test_fff_energy_is_matched_by_fluence_mode():
    beam = make_beam(meterset_mu=140.0, fluence_mode_id="FFF")
    program = build_linac_program(make_plan(beam), make_machine())
    assert program.units[0].total_time_s == pytest.approx(6.0)  # 140 MU at 1400 MU/min


def test_minute_beam_runs_one_minute_per_minute():
    beam = make_beam(meterset_mu=2.0, unit="MINUTE", dose_rate_set=[600.0, 600.0])
    unit = build_linac_program(make_plan(beam), make_machine()).units[0]
    assert unit.meterset_unit == "MINUTE"
    assert unit.total_time_s == pytest.approx(120.0)
    assert unit.segments[1].beam_rate_per_min == pytest.approx(1.0)


def test_missing_energy_is_a_clear_error():
    beam = make_beam(energy_mev=18.0)
    with pytest.raises(
        RtsimError, match=r"test\.dcm: beam 1 \(Beam1\).*Nominal Beam Energy.*18 MeV.*6X, 6FFF, 12E"
    ):
        build_linac_program(make_plan(beam), make_machine())


def test_gantry_limited_vmat_segments():
    # 4 control points, 4 deg and 2 MU per segment: gantry-limited at 0.667 s and 180 MU/min
    beam = make_beam(
        meterset_mu=6.0,
        weights=[0, 1, 2, 3],
        gantry_deg=[0.0, 4.0, 8.0, 12.0],
        gantry_direction="CW",
        mlc_mm=open_leaves(4),
    )
    program = build_linac_program(make_plan(beam), make_machine())
    for segment in beam_segments(program):
        assert segment.kind is SegmentKind.BEAM
        assert segment.duration_s == pytest.approx(4.0 / 6.0)
        assert segment.beam_rate_per_min == pytest.approx(180.0)
        assert segment.limiting_axis == "gantry"
        assert segment.axis_times_s["dose"] == pytest.approx(0.2)


def test_dose_limited_vmat_segment():
    beam = make_beam(meterset_mu=20.0, gantry_deg=[0.0, 2.0], gantry_direction="CW")
    (segment,) = beam_segments(build_linac_program(make_plan(beam), make_machine()))
    assert segment.duration_s == pytest.approx(2.0)
    assert segment.beam_rate_per_min == pytest.approx(600.0)
    assert segment.limiting_axis == "dose"


def test_mlc_limited_segment():
    leaves = open_leaves(2)
    leaves[1, 1, 30] += 25.0  # one leaf of bank B moves 25 mm: 1 s at 25 mm/s
    beam = make_beam(meterset_mu=2.0, gantry_deg=[0.0, 1.0], gantry_direction="CW", mlc_mm=leaves)
    (segment,) = beam_segments(build_linac_program(make_plan(beam), make_machine()))
    assert segment.duration_s == pytest.approx(1.0)
    assert segment.beam_rate_per_min == pytest.approx(120.0)
    assert segment.limiting_axis == "mlc"


def test_binned_servo_picks_a_bin():
    beam = make_beam(meterset_mu=2.0, gantry_deg=[0.0, 4.0], gantry_direction="CW")
    program = build_linac_program(make_plan(beam), make_machine(servo=DoseRateServo.BINNED))
    (segment,) = beam_segments(program)
    assert segment.beam_rate_per_min == pytest.approx(150.0)  # 180 MU/min would fit; bins 600/300/150/75
    assert segment.duration_s == pytest.approx(0.8)


def test_dose_rate_set_of_cp_i_caps_segment_i():
    beam = make_beam(meterset_mu=40.0, weights=[0, 1, 2], dose_rate_set=[600.0, 300.0, 100.0])
    segments = beam_segments(build_linac_program(make_plan(beam), make_machine()))
    assert [s.duration_s for s in segments] == pytest.approx([2.0, 4.0])
    assert [s.beam_rate_per_min for s in segments] == pytest.approx([600.0, 300.0])


def test_dynamic_wedge_jaw_motion_limits_a_short_beam():
    jaw_y = np.array([[-100.0, 100.0], [90.0, 100.0]])  # jaw 1 sweeps 190 mm: 7.6 s at 25 mm/s
    beam = make_beam(meterset_mu=50.0, jaw_y_mm=jaw_y)
    (segment,) = beam_segments(build_linac_program(make_plan(beam), make_machine()))
    assert segment.duration_s == pytest.approx(7.6)
    assert segment.limiting_axis == "jaw_y"


def test_step_and_shoot_holds_the_beam_while_leaves_move():
    # (A, w0) -> (A, w1) -> (B, w1) -> (B, w2): beam, move with beam held, beam
    leaves = open_leaves(4)
    leaves[2:, 0, :] -= 50.0  # aperture B: bank A opened 50 mm
    beam = make_beam(meterset_mu=20.0, weights=[0.0, 0.5, 0.5, 1.0], mlc_mm=leaves)
    program = build_linac_program(make_plan(beam), make_machine(mlc_accel=100.0))
    kinds = [s.kind for s in program.units[0].segments]
    assert kinds == [SegmentKind.SETUP, SegmentKind.BEAM, SegmentKind.HOLD_MOVE, SegmentKind.BEAM]
    first, move, last = beam_segments(program)
    assert move.meterset_delta == 0.0
    assert move.beam_rate_per_min == 0.0
    assert move.duration_s == pytest.approx(50.0 / 25.0 + 25.0 / 100.0)  # trapezoid, rest to rest
    assert move.limiting_axis == "mlc"
    assert first.duration_s == pytest.approx(1.0)
    assert last.duration_s == pytest.approx(1.0)


def test_setup_moves_between_beams_at_axis_speed():
    first = make_beam(1, meterset_mu=60.0)
    second = make_beam(2, meterset_mu=60.0, gantry_deg=[90.0, 90.0])
    program = build_linac_program(make_plan(first, second), make_machine())
    setup = program.units[1].segments[0]
    assert setup.kind is SegmentKind.SETUP
    assert setup.duration_s == pytest.approx(15.0)  # 90 deg at 6 deg/s
    assert setup.limiting_axis == "gantry"
    assert program.total_time_s == pytest.approx(6.0 + 15.0 + 6.0)


def test_setup_takes_the_shorter_way_round():
    first = make_beam(1, meterset_mu=60.0, gantry_deg=[350.0, 350.0])
    second = make_beam(2, meterset_mu=60.0, gantry_deg=[20.0, 20.0])
    program = build_linac_program(make_plan(first, second), make_machine())
    assert program.units[1].segments[0].duration_s == pytest.approx(30.0 / 6.0)
    np.testing.assert_allclose(program.units[1].cp_positions["gantry_deg"] % 360.0, [20.0, 20.0])


def test_cc_arc_positions_are_unwrapped_along_the_arc():
    # 0 -> 270 CC is a 90 deg arc through 315, not 270 deg the other way
    beam = make_beam(
        meterset_mu=10.0, weights=[0, 1, 2], gantry_deg=[0.0, 315.0, 270.0], gantry_direction="CC"
    )
    unit = build_linac_program(make_plan(beam), make_machine()).units[0]
    np.testing.assert_allclose(unit.cp_positions["gantry_deg"], [0.0, -45.0, -90.0])
    assert unit.total_time_s == pytest.approx(90.0 / 6.0)


def test_couch_rotation_direction_follows_iec():
    # couch 170 -> 160 CC is 350 deg (PS3.3 C.8.8.14.8): 350/3 s at 3 deg/s
    beam = make_beam(meterset_mu=1.0, couch_deg=[170.0, 160.0])
    beam = dataclasses.replace(beam, couch_direction=("CC", "CC"))
    unit = build_linac_program(make_plan(beam), make_machine()).units[0]
    assert unit.segments[1].limiting_axis == "couch"
    assert unit.total_time_s == pytest.approx(350.0 / 3.0)


def test_positions_and_noise_keys():
    program = build_linac_program(make_plan(make_beam(mlc_mm=open_leaves(2))), make_machine())
    unit = program.units[0]
    assert set(unit.cp_positions) == {
        "gantry_deg",
        "collimator_deg",
        "couch_deg",
        "table_top_vertical_mm",
        "table_top_longitudinal_mm",
        "table_top_lateral_mm",
        "jaw_x_mm",
        "jaw_y_mm",
        "mlc_mm",
    }
    assert unit.cp_positions["mlc_mm"].shape == (2, 2, PAIRS)
    assert unit.cp_positions["jaw_x_mm"].shape == (2, 2)
    assert np.all(np.isnan(unit.cp_positions["table_top_vertical_mm"]))
    assert program.axis_noise_sd["gantry_deg"] == 0.1
    assert program.axis_noise_sd["jaw_y_mm"] == 0.2
    assert program.axis_noise_sd["table_top_lateral_mm"] == 0.3
    assert program.axis_noise_sd["mlc_mm"] == 0.03
    assert program.machine_id == "test-truebeam"
    assert program.device_kind == "linac"
    no_mlc = build_linac_program(make_plan(make_beam()), make_machine()).units[0]
    assert "mlc_mm" not in no_mlc.cp_positions


# --- beam selection and continuations ---------------------------------------------------------------


def test_default_tasks_skip_beams_outside_the_fraction_group_but_keep_zero_mu_beams():
    beams = (make_beam(1), make_beam(2, meterset_mu=0.0), make_beam(3))
    plan = make_plan(*beams, group_beams=[1, 2])
    assert [t.beam_number for t in default_beam_tasks(plan)] == [1, 2]
    program = build_linac_program(plan, make_machine())
    assert [u.number for u in program.units] == [1, 2]
    assert [s.kind for s in program.units[1].segments] == [SegmentKind.SETUP, SegmentKind.HOLD_MOVE]


def test_beam_tasks_set_the_order():
    plan = make_plan(make_beam(1), make_beam(2))
    program = build_linac_program(plan, make_machine(), [BeamTask(2), BeamTask(1)])
    assert [u.number for u in program.units] == [2, 1]


def test_unknown_beam_task_is_an_error():
    with pytest.raises(RtsimError, match=r"beam task for beam 7, but the plan has beams 1"):
        build_linac_program(make_plan(make_beam(1)), make_machine(), [BeamTask(7)])


def test_continuation_clips_the_meterset():
    # plan: 0, 25, 50, 75, 100 MU; resume at 40 MU, stop at 90 MU
    beam = make_beam(meterset_mu=100.0, weights=[0, 1, 2, 3, 4], mlc_mm=open_leaves(5))
    task = BeamTask(1, delivery_type="CONTINUATION", start_meterset_mu=40.0, end_meterset_mu=90.0)
    unit = build_linac_program(make_plan(beam), make_machine(), [task]).units[0]
    assert unit.meterset_offset == pytest.approx(40.0)
    assert unit.specified_meterset == pytest.approx(50.0)
    np.testing.assert_allclose(unit.cp_meterset, [0.0, 0.0, 10.0, 35.0, 50.0])
    # the record convention: offset + session meterset = MAX(start, MIN(SpecMS, end))
    spec = beam.cumulative_meterset_mu
    np.testing.assert_allclose(
        unit.meterset_offset + unit.cp_meterset, np.maximum(40.0, np.minimum(spec, 90.0))
    )
    kinds = [s.kind for s in unit.segments]
    assert kinds == [
        SegmentKind.SETUP,
        SegmentKind.HOLD_MOVE,  # 0 -> 25 MU: already delivered, beam-off move
        SegmentKind.BEAM,  # 25 -> 50 MU: only the 10 MU after 40
        SegmentKind.BEAM,
        SegmentKind.BEAM,  # 75 -> 90 of 100
    ]
    assert [s.meterset_delta for s in unit.segments[1:]] == pytest.approx([0.0, 10.0, 25.0, 15.0])
    assert unit.segments[2].duration_s == pytest.approx(1.0)  # 10 MU at 600 MU/min


def test_continuation_defaults_and_bounds():
    beam = make_beam(meterset_mu=100.0)
    task = BeamTask(1, delivery_type="CONTINUATION", start_meterset_mu=30.0)
    unit = build_linac_program(make_plan(beam), make_machine(), [task]).units[0]
    assert (unit.meterset_offset, unit.specified_meterset) == pytest.approx((30.0, 70.0))
    bad = BeamTask(1, delivery_type="CONTINUATION", start_meterset_mu=80.0, end_meterset_mu=120.0)
    with pytest.raises(RtsimError, match=r"beam 1 \(Beam1\): Continuation Start Meterset \(0074,0120\) 80"):
        build_linac_program(make_plan(beam), make_machine(), [bad])


# --- properties -------------------------------------------------------------------------------------


@st.composite
def random_beams(draw):
    n = draw(st.integers(2, 7))
    steps = draw(st.lists(st.one_of(st.just(0.0), st.floats(0.1, 5.0)), min_size=n - 1, max_size=n - 1))
    weights = np.concatenate([[0.0], np.cumsum(steps)])
    if weights[-1] == 0:
        weights[-1] = 1.0
    # with an explicit direction a 0-deg step would be a full turn (PS3.3 C.8.8.14.8): keep steps > 0
    gantry_steps = draw(st.lists(st.floats(0.5, 20.0), min_size=n - 1, max_size=n - 1))
    direction = draw(st.sampled_from(["CW", "CC"]))
    sign = 1.0 if direction == "CW" else -1.0
    gantry = np.mod(180.0 + sign * np.concatenate([[0.0], np.cumsum(gantry_steps)]), 360.0)
    leaves = open_leaves(n)
    moves = draw(st.lists(st.floats(-30.0, 30.0), min_size=n, max_size=n))
    leaves[:, 0, 25] = np.asarray(moves) - 40.0
    leaves[:, 1, 25] = np.asarray(moves) + 40.0
    meterset = draw(st.floats(1.0, 300.0))
    drs = draw(st.lists(st.one_of(st.just(math.nan), st.floats(100.0, 600.0)), min_size=n, max_size=n))
    beam = make_beam(
        meterset_mu=meterset,
        weights=list(weights),
        gantry_deg=list(gantry),
        gantry_direction=direction,
        mlc_mm=leaves,
        dose_rate_set=drs,
    )
    machine = make_machine(mlc_accel=draw(st.sampled_from([None, 80.0, 600.0])), gantry_accel=12.0)
    return beam, machine


@settings(max_examples=60, deadline=None)
@given(random_beams())
def test_program_never_outruns_an_axis_and_meterset_is_monotonic(case):
    beam, machine = case
    unit = build_linac_program(make_plan(beam), machine).units[0]
    assert np.all(np.diff(unit.cp_meterset) >= 0)
    assert sum(s.meterset_delta for s in unit.segments) == pytest.approx(unit.specified_meterset)
    gantry = unit.cp_positions["gantry_deg"]
    leaves = unit.cp_positions["mlc_mm"]
    for s in unit.segments[1:]:
        gantry_move = abs(gantry[s.end_cp] - gantry[s.start_cp])
        leaf_move = np.abs(leaves[s.end_cp] - leaves[s.start_cp]).max()
        assert gantry_move <= 6.0 * s.duration_s * (1 + 1e-9) + 1e-9
        assert leaf_move <= 25.0 * s.duration_s * (1 + 1e-9) + 1e-9
        assert 60.0 * s.meterset_delta <= 600.0 * s.duration_s * (1 + 1e-9) + 1e-9
        assert s.beam_rate_per_min <= 600.0 * (1 + 1e-9)
        assert (s.kind is SegmentKind.BEAM) == (s.meterset_delta > 0)


def split_beam(beam: LinacBeam, index: int) -> LinacBeam:
    """Insert the midpoint of segment ``index`` as a new control point (interpolated everything)."""

    def insert(values: np.ndarray, mid) -> np.ndarray:
        return np.insert(np.asarray(values), index + 1, mid, axis=0)

    def mid(values: np.ndarray) -> np.ndarray:
        return values[index] + 0.5 * (values[index + 1] - values[index])

    g0, g1 = beam.gantry_deg[index], beam.gantry_deg[index + 1]
    sign = 1.0 if beam.gantry_direction[index] == "CW" else -1.0
    travel = np.mod(sign * (g1 - g0), 360.0) or 360.0
    gantry_mid = np.mod(g0 + sign * travel / 2.0, 360.0)
    n = beam.control_point_count + 1
    return dataclasses.replace(
        beam,
        control_point_indices=np.arange(n),
        cumulative_meterset_weight=insert(
            beam.cumulative_meterset_weight, mid(beam.cumulative_meterset_weight)
        ),
        cumulative_meterset_mu=insert(beam.cumulative_meterset_mu, mid(beam.cumulative_meterset_mu)),
        dose_rate_set_mu_per_min=insert(beam.dose_rate_set_mu_per_min, beam.dose_rate_set_mu_per_min[index]),
        gantry_deg=insert(beam.gantry_deg, gantry_mid),
        gantry_direction=beam.gantry_direction[: index + 1] + beam.gantry_direction[index:],
        collimator_deg=insert(beam.collimator_deg, beam.collimator_deg[index]),
        collimator_direction=(*beam.collimator_direction, "NONE"),
        couch_deg=insert(beam.couch_deg, beam.couch_deg[index]),
        couch_direction=(*beam.couch_direction, "NONE"),
        table_top_vertical_mm=insert(beam.table_top_vertical_mm, math.nan),
        table_top_longitudinal_mm=insert(beam.table_top_longitudinal_mm, math.nan),
        table_top_lateral_mm=insert(beam.table_top_lateral_mm, math.nan),
        jaw_x_mm=insert(beam.jaw_x_mm, mid(beam.jaw_x_mm)),
        jaw_y_mm=insert(beam.jaw_y_mm, mid(beam.jaw_y_mm)),
        mlc_mm=insert(beam.mlc_mm, mid(beam.mlc_mm)),
        wedge_in=insert(beam.wedge_in, beam.wedge_in[index]),
    )


@settings(max_examples=60, deadline=None)
@given(random_beams(), st.data())
def test_splitting_a_control_point_interval_changes_nothing(case, data):
    beam, machine = case
    index = data.draw(st.integers(0, beam.control_point_count - 2))
    whole = build_linac_program(make_plan(beam), machine).units[0]
    split = build_linac_program(make_plan(split_beam(beam, index)), machine).units[0]
    assert split.total_time_s == pytest.approx(whole.total_time_s, rel=1e-9)
    assert split.beam_on_time_s == pytest.approx(whole.beam_on_time_s, rel=1e-9)
    assert split.cp_meterset[-1] == pytest.approx(whole.cp_meterset[-1])


# --- real plans (IHE-RO) ----------------------------------------------------------------------------


def _limiting_share(unit) -> Counter:
    share: Counter = Counter()
    for s in unit.segments[1:]:
        share[s.limiting_axis] += s.duration_s
    return share


def test_ihe_ro_vmat_plan_on_truebeam(ihe_ro_dir):
    from simulators.plans.dicom_reader import read_plan_file

    plan = read_plan_file(ihe_ro_dir / "ARTI/Datasets/RTAdvanced/IMATVMATBeam/RTPlanIMATVMATBeam.dcm")
    machine = load_model("truebeam-millennium120")
    program = build_linac_program(plan, machine)
    assert [u.number for u in program.units] == [1, 2]
    for unit in program.units:
        # two 90-degree arcs of ~150 MU: at least 15 s each (gantry at 6 deg/s) and 15 s (dose at 600)
        assert 15.0 <= unit.beam_on_time_s <= 120.0
        assert unit.cp_meterset[-1] == pytest.approx(unit.specified_meterset)
        assert len(unit.segments) == 98  # SETUP + 97 intervals
        assert all(s.kind is SegmentKind.BEAM for s in unit.segments[1:])
        gantry = unit.cp_positions["gantry_deg"]
        assert abs(gantry[-1] - gantry[0]) == pytest.approx(90.0)
    # arc 1 ends at 270, arc 2 starts at 0: a 90-degree setup at 6 deg/s (+ ramps)
    assert program.units[1].segments[0].duration_s >= 15.0
    # vmax-only bound: the same plan with no acceleration cannot be slower
    no_accel = dataclasses.replace(
        machine.linac,
        mlc=dataclasses.replace(machine.linac.mlc, max_leaf_accel_mm_per_s2=None),
        gantry=dataclasses.replace(machine.linac.gantry, max_accel_per_s2=None),
    )
    vmax_only = build_linac_program(plan, dataclasses.replace(machine, linac=no_accel))
    assert vmax_only.total_time_s <= program.total_time_s
    assert 15.0 <= vmax_only.units[0].beam_on_time_s <= 25.0


def test_ihe_ro_sliding_window_plan_on_truebeam(ihe_ro_dir):
    from simulators.plans.dicom_reader import read_plan_file

    plan = read_plan_file(
        ihe_ro_dir / "ARTI/Datasets/RTAdvanced/SlidingWindowBeam/RTPlanSlidingWindowBeam.dcm"
    )
    program = build_linac_program(plan, load_model("truebeam-millennium120"))
    assert [u.number for u in program.units] == [1, 2, 3, 4, 5]
    for unit in program.units:
        dose_only_s = 60.0 * unit.specified_meterset / 600.0
        assert dose_only_s <= unit.beam_on_time_s <= 3 * dose_only_s
        assert _limiting_share(unit)["gantry"] == 0.0  # gantry static during the beam
