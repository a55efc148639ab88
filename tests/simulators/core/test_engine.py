"""The SimPy delivery engine on hand-built programs: exact event sequences, faults, noise, threads."""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import threading
from datetime import datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulators.core import events as ev
from simulators.core.bus import EventBus, EventRecorder
from simulators.core.engine import DeliveryEngine
from simulators.core.noise import PositionNoise, uncross
from simulators.core.program import DeliveryProgram, ProgramUnit, Segment, SegmentKind
from simulators.core.results import TerminationStatus
from simulators.core.states import MachineState

START = datetime(2024, 5, 6, 8, 30, 0)
S = SegmentKind


def make_unit(number: int, *, setup_s: float | None = 5.0) -> ProgramUnit:
    """Three control points, 0 -> 50 -> 100 MU: 10 s dose-limited then 20 s MLC-limited.

    The gantry goes 350 -> 360 -> 370 deg: rotations arrive unwrapped from the program builder.
    """
    segments = []
    if setup_s is not None:
        segments.append(Segment(S.SETUP, 0, 0, setup_s, 0.0, 0.0, "gantry"))
    segments += [
        Segment(S.BEAM, 0, 1, 10.0, 50.0, 300.0, "dose"),
        Segment(S.BEAM, 1, 2, 20.0, 50.0, 150.0, "mlc"),
    ]
    mlc = np.zeros((3, 2, 4))
    mlc[:, 0, :] = -5.0
    mlc[:, 1, :] = 5.0
    return ProgramUnit(
        number=number,
        name=f"Beam {number}",
        meterset_unit="MU",
        specified_meterset=100.0,
        cp_plan_indices=np.array([0, 1, 2]),
        cp_meterset=np.array([0.0, 50.0, 100.0]),
        cp_positions={
            "gantry_deg": np.array([350.0, 360.0, 370.0]),
            "jaw_x_mm": np.array([[-50.0, 50.0]] * 3),
            "mlc_mm": mlc,
        },
        segments=tuple(segments),
    )


NOISE = {"gantry_deg": 0.05, "jaw_x_mm": 0.1, "mlc_mm": 0.02}


def make_program(*units: ProgramUnit, noise: dict[str, float] | None = None) -> DeliveryProgram:
    units = units or (make_unit(1), make_unit(2))
    return DeliveryProgram("TB1", "linac", tuple(units), dict(NOISE if noise is None else noise))


def make_engine(program: DeliveryProgram | None = None, **kw) -> tuple[DeliveryEngine, EventRecorder]:
    bus = EventBus()
    recorder = EventRecorder()
    bus.subscribe(recorder)
    engine = DeliveryEngine(program or make_program(), bus=bus, session_start=START, **kw)
    return engine, recorder


def trace(recorder: EventRecorder) -> list[tuple]:
    """(type, time, key field) per event, for exact sequence comparisons."""
    out = []
    for e in recorder.events:
        key = {
            ev.StateChanged: lambda e: e.new.value,
            ev.SegmentStarted: lambda e: (e.unit_number, e.segment_index, e.kind),
            ev.MetersetProgress: lambda e: (e.unit_number, e.delivered),
            ev.UnitFinished: lambda e: (e.unit_number, e.termination_status.value, e.started),
            ev.DeliveryFinished: lambda e: (e.termination_status.value, e.termination_code),
        }.get(type(e), lambda e: getattr(e, "unit_number", None))(e)
        out.append((type(e).__name__, round(e.time_s, 9), key))
    return out


def unit_trace(u: int, t0: float, final_state: str = "READY") -> list[tuple]:
    return [
        ("UnitStarted", t0, u),
        ("SegmentStarted", t0, (u, 0, "setup")),
        ("MetersetProgress", t0 + 5, (u, 0.0)),
        ("SegmentStarted", t0 + 5, (u, 1, "beam")),
        ("StateChanged", t0 + 5, "BEAM_ON"),
        ("BeamOn", t0 + 5, u),
        ("MetersetProgress", t0 + 15, (u, 50.0)),
        ("SegmentStarted", t0 + 15, (u, 2, "beam")),
        ("MetersetProgress", t0 + 35, (u, 100.0)),
        ("BeamOff", t0 + 35, u),
        ("StateChanged", t0 + 35, final_state),
        ("UnitFinished", t0 + 35, (u, "NORMAL", True)),
    ]


# ---------------------------------------------------------------------------------------- normal delivery


def test_normal_delivery_exact_event_sequence_and_times() -> None:
    engine, rec = make_engine()
    result = engine.run()
    expected = [
        ("StateChanged", 0.0, "PREPARED"),
        ("UnitStarted", 0.0, 1),
        ("StateChanged", 0.0, "READY"),
        *unit_trace(1, 0.0)[1:],
        *unit_trace(2, 35.0),
        ("StateChanged", 70.0, "COMPLETED"),
        ("DeliveryFinished", 70.0, ("NORMAL", "")),
    ]
    assert trace(rec) == expected
    assert result.termination_status is TerminationStatus.NORMAL
    assert result.completed
    assert result.end_time_s == pytest.approx(70.0)
    assert engine.state is MachineState.COMPLETED
    assert list(result.events) == rec.events


def test_normal_unit_results_times_rates_and_shares() -> None:
    result = make_engine()[0].run()
    u1, u2 = result.units
    assert (u1.start_time_s, u1.end_time_s, u2.start_time_s, u2.end_time_s) == pytest.approx((0, 35, 35, 70))
    assert u1.delivered
    assert u2.delivered
    assert u1.delivered_meterset == pytest.approx(100.0)
    assert u1.beam_on_time_s == pytest.approx(30.0)
    assert u1.limiting_axis_share == pytest.approx({"gantry": 5 / 35, "dose": 10 / 35, "mlc": 20 / 35})
    cps = u1.control_points
    assert [c.plan_cp_index for c in cps] == [0, 1, 2]
    assert [c.time_s for c in cps] == pytest.approx([5.0, 15.0, 35.0])
    assert [c.delivered_meterset for c in cps] == pytest.approx([0.0, 50.0, 100.0])
    assert [c.dose_rate_set_per_min for c in cps] == pytest.approx([300.0, 150.0, 150.0])
    assert [c.dose_rate_delivered_per_min for c in cps] == pytest.approx([300.0, 150.0, 150.0])


def test_session_fraction_is_monotonic_and_ends_at_one() -> None:
    engine, rec = make_engine(sample_interval_s=1.0)
    engine.run()
    fractions = [e.session_fraction for e in rec.of_type(ev.MetersetProgress)]
    assert fractions == sorted(fractions)
    assert fractions[-1] == pytest.approx(1.0)
    assert len(rec.of_type(ev.AxisSample)) == 70  # t = 0, 1, ..., 69: the session ends at 70


def test_sampling_interpolates_planned_positions_and_meterset() -> None:
    engine, rec = make_engine(sample_interval_s=2.5)
    engine.run()
    at_10 = next(e for e in rec.of_type(ev.AxisSample) if e.time_s == pytest.approx(10.0))
    assert at_10.positions["gantry_deg"] == pytest.approx(355.0)  # 350 -> 360, half way
    progress_10 = next(e for e in rec.of_type(ev.MetersetProgress) if e.time_s == pytest.approx(10.0))
    assert progress_10.delivered == pytest.approx(25.0)
    # during the next unit's setup the gantry goes back from 370 to 350 deg
    at_37_5 = next(e for e in rec.of_type(ev.AxisSample) if e.time_s == pytest.approx(37.5))
    assert at_37_5.positions["gantry_deg"] == pytest.approx(360.0)


def test_step_and_shoot_hold_move_is_beam_hold_without_beam() -> None:
    unit = make_unit(1, setup_s=None)
    segs = (unit.segments[0], Segment(S.HOLD_MOVE, 1, 1, 4.0, 0.0, 0.0, "mlc"), unit.segments[1])
    engine, rec = make_engine(make_program(dataclasses.replace(unit, segments=segs)))
    result = engine.run()
    states = [(e.time_s, e.new.value) for e in rec.of_type(ev.StateChanged)]
    assert (10.0, "BEAM_HOLD") in states
    assert (14.0, "BEAM_ON") in states
    assert [(type(e).__name__, e.time_s) for e in rec.of_type(ev.BeamOn, ev.BeamOff)] == [
        ("BeamOn", 0.0),
        ("BeamOff", 10.0),
        ("BeamOn", 14.0),
        ("BeamOff", 34.0),
    ]
    assert result.units[0].beam_on_time_s == pytest.approx(30.0)
    assert [c.plan_cp_index for c in result.units[0].control_points] == [0, 1, 2]


def test_continuation_metersets_stay_on_the_program_scale() -> None:
    # linac builder convention: a continuation from 40 MU has cp_meterset 0 -> 60 and meterset_offset 40
    unit = dataclasses.replace(
        make_unit(1), cp_meterset=np.array([0.0, 30.0, 60.0]), specified_meterset=60.0, meterset_offset=40.0
    )
    engine, _ = make_engine(make_program(unit))
    engine.schedule_at(10.0, lambda: engine.interlock("DOS2"))
    u = engine.run().units[0]
    assert u.delivered_meterset == pytest.approx(15.0)  # half of the first 30 MU; the offset is not added
    assert u.specified_meterset == pytest.approx(60.0)
    assert u.control_points[-1].specified_meterset == pytest.approx(30.0)


# ---------------------------------------------------------------------------------------- faults


def test_interlock_mid_segment_interpolates_and_stops_the_session() -> None:
    engine, rec = make_engine()
    engine.schedule_at(20.0, lambda: engine.interlock("DS12"))  # 5 s into unit 1's 20 s segment 50->100
    result = engine.run()
    assert result.termination_status is TerminationStatus.MACHINE
    assert result.termination_code == "DS12"
    assert result.end_time_s == pytest.approx(20.0)
    u1, u2 = result.units
    assert u1.termination_status is TerminationStatus.MACHINE
    assert u1.termination_code == "DS12"
    assert u1.delivered_meterset == pytest.approx(62.5)
    last = u1.control_points[-1]
    assert (last.plan_cp_index, last.time_s) == (2, pytest.approx(20.0))
    assert last.specified_meterset == pytest.approx(100.0)
    assert last.delivered_meterset == pytest.approx(62.5)
    assert last.positions["gantry_deg"] == pytest.approx(362.5, abs=0.5)  # 360 -> 370, a quarter, + noise
    assert u1.beam_on_time_s == pytest.approx(15.0)
    assert not u2.delivered
    assert u2.delivered_meterset == 0.0
    assert u2.control_points == ()
    assert [e.new.value for e in rec.of_type(ev.StateChanged)][-2:] == ["INTERRUPTED", "TERMINATED"]
    assert ("BeamOff", 20.0, 1) in trace(rec)
    assert engine.active_interlocks == {"DS12": True}


def test_interlock_during_setup_leaves_the_unit_without_record() -> None:
    engine, _ = make_engine()
    engine.schedule_at(37.0, lambda: engine.interlock("COLL", latching=False))
    result = engine.run()
    u1, u2 = result.units
    assert u1.delivered
    assert u1.termination_status is TerminationStatus.NORMAL
    assert not u2.delivered
    assert u2.termination_status is TerminationStatus.MACHINE
    assert u2.termination_code == "COLL"
    assert u2.control_points == ()
    assert engine.active_interlocks == {}  # non-latching: cleared when the session ended


def test_interlock_raised_by_a_subscriber_inside_the_delivery_process() -> None:
    engine, rec = make_engine()

    def on_segment(event: ev.SegmentStarted) -> None:
        if (event.unit_number, event.segment_index) == (1, 2):
            engine.interlock("ACC")

    engine.bus.subscribe(on_segment, [ev.SegmentStarted])
    result = engine.run()
    assert result.end_time_s == pytest.approx(15.0)
    assert result.units[0].delivered_meterset == pytest.approx(50.0)
    assert [c.plan_cp_index for c in result.units[0].control_points] == [0, 1]  # stopped exactly at CP 1
    assert not rec.of_type(ev.BeamOn)[1:]  # beam never switched on again


def test_hold_resume_keeps_meterset_flat_and_adds_time() -> None:
    engine, rec = make_engine(sample_interval_s=1.0)
    engine.schedule_at(10.0, lambda: engine.hold("MLC leaf lag"))
    engine.schedule_at(40.0, engine.resume)
    result = engine.run()
    assert result.termination_status is TerminationStatus.NORMAL
    u1, u2 = result.units
    assert u1.end_time_s == pytest.approx(65.0)
    assert u2.end_time_s == pytest.approx(100.0)
    assert u1.delivered_meterset == pytest.approx(100.0)
    assert u1.beam_on_time_s == pytest.approx(30.0)
    assert u1.limiting_axis_share["hold"] == pytest.approx(30 / 65)
    assert sum(u1.limiting_axis_share.values()) == pytest.approx(1.0)
    held = [
        e.delivered
        for e in rec.of_type(ev.MetersetProgress)
        if 10.0 <= e.time_s <= 40.0 and e.unit_number == 1
    ]
    assert held
    assert all(mu == pytest.approx(25.0) for mu in held)
    assert [(type(e).__name__, e.time_s) for e in rec.of_type(ev.BeamHeld, ev.BeamResumed)] == [
        ("BeamHeld", 10.0),
        ("BeamResumed", 40.0),
    ]
    # CP 0 -> 1 took 10 s + 30 s held: the delivered rate includes the hold, the set rate does not
    cp0 = u1.control_points[0]
    assert cp0.dose_rate_set_per_min == pytest.approx(300.0)
    assert cp0.dose_rate_delivered_per_min == pytest.approx(50.0 / (40.0 / 60.0))


def test_hold_not_resumed_ends_machine_after_the_timeout() -> None:
    engine, _ = make_engine(interrupt_timeout_s=60.0)
    engine.schedule_at(10.0, lambda: engine.hold("dose servo"))
    result = engine.run()
    assert (result.termination_status, result.termination_code) == (TerminationStatus.MACHINE, "HOLD_TIMEOUT")
    assert result.end_time_s == pytest.approx(70.0)
    assert result.units[0].delivered_meterset == pytest.approx(25.0)


def test_add_delay_resumes_by_itself() -> None:
    engine, _ = make_engine()
    engine.schedule_at(20.0, lambda: engine.add_delay(7.0, "gantry stall"))
    result = engine.run()
    assert result.completed
    assert result.end_time_s == pytest.approx(77.0)
    assert result.units[0].limiting_axis_share["hold"] == pytest.approx(7 / 42)


def test_terminate_is_operator_and_goes_straight_to_terminated() -> None:
    engine, rec = make_engine()
    engine.schedule_at(12.0, lambda: engine.terminate(code="STOP"))
    result = engine.run()
    assert (result.termination_status, result.termination_code) == (TerminationStatus.OPERATOR, "STOP")
    assert result.units[0].delivered_meterset == pytest.approx(35.0)
    assert result.units[0].termination_status is TerminationStatus.OPERATOR
    assert [e.new.value for e in rec.of_type(ev.StateChanged)][-2:] == ["BEAM_ON", "TERMINATED"]


def test_terminate_before_start_delivers_nothing() -> None:
    engine, _ = make_engine()
    engine.terminate(code="CANCEL")
    result = engine.run()
    assert result.termination_status is TerminationStatus.OPERATOR
    assert [u.delivered for u in result.units] == [False, False]
    assert result.end_time_s == 0.0


def test_operator_interrupt_resumed_completes_normally() -> None:
    engine, rec = make_engine()
    engine.schedule_at(20.0, lambda: engine.interrupt("BEAM_OFF_KEY"))
    engine.schedule_at(50.0, engine.resume)
    result = engine.run()
    assert result.completed
    assert result.units[0].end_time_s == pytest.approx(65.0)
    assert result.units[0].delivered_meterset == pytest.approx(100.0)
    states = [(e.time_s, e.new.value) for e in rec.of_type(ev.StateChanged)]
    assert states[3:6] == [(20.0, "INTERRUPTED"), (50.0, "READY"), (50.0, "BEAM_ON")]


def test_operator_interrupt_not_resumed_ends_operator_with_partial_record() -> None:
    engine, _ = make_engine(interrupt_timeout_s=100.0)
    engine.schedule_at(20.0, lambda: engine.interrupt("BEAM_OFF_KEY"))
    result = engine.run()
    assert (result.termination_status, result.termination_code) == (
        TerminationStatus.OPERATOR,
        "BEAM_OFF_KEY",
    )
    assert result.end_time_s == pytest.approx(120.0)
    assert result.units[0].delivered_meterset == pytest.approx(62.5)
    assert result.units[0].control_points[-1].time_s == pytest.approx(120.0)


def test_scale_remaining_durations_stretches_the_rest_of_the_session() -> None:
    engine, rec = make_engine()
    engine.schedule_at(10.0, lambda: engine.scale_remaining_durations(2.0, "gantry motor degraded"))
    result = engine.run()
    assert result.completed
    # unit 1: 5 + (5 + 2*5) + 2*20 = 60 s; unit 2: 2*35 = 70 s
    assert result.units[0].end_time_s == pytest.approx(60.0)
    assert result.end_time_s == pytest.approx(130.0)
    cp1 = result.units[0].control_points[1]
    assert (cp1.dose_rate_set_per_min, cp1.dose_rate_delivered_per_min) == pytest.approx((150.0, 75.0))
    assert rec.of_type(ev.SegmentStarted)[-1].duration_s == pytest.approx(40.0)
    assert rec.of_type(ev.FaultInjected)[0].params == {"factor": 2.0, "reason": "gantry motor degraded"}


def test_door_open_with_beam_on_raises_the_door_interlock() -> None:
    engine, _rec = make_engine()
    engine.schedule_at(8.0, lambda: engine.set_door(True))
    engine.schedule_at(9.0, lambda: engine.set_door(False))
    result = engine.run()
    assert (result.termination_status, result.termination_code) == (TerminationStatus.MACHINE, "DOOR")
    assert result.units[0].delivered_meterset == pytest.approx(15.0)
    assert result.end_time_s == pytest.approx(8.0)
    assert engine.active_interlocks == {"DOOR": False}  # stays until the door closes


def test_beam_on_refused_while_door_open_then_proceeds() -> None:
    engine, rec = make_engine(door_open=True)
    engine.schedule_at(12.0, lambda: engine.set_door(False))
    result = engine.run()
    assert result.completed
    refused = rec.of_type(ev.BeamOnRefused)
    assert [(e.time_s, e.reason) for e in refused] == [(5.0, "treatment room door open")]
    assert rec.of_type(ev.BeamOn)[0].time_s == pytest.approx(12.0)
    assert result.units[0].limiting_axis_share["hold"] == pytest.approx(7 / 42)


def test_latched_interlock_from_an_earlier_session_refuses_beam_until_cleared() -> None:
    engine, _ = make_engine(interlocks=["BMAG"], interrupt_timeout_s=30.0)
    result = engine.run()
    assert (result.termination_status, result.termination_code) == (TerminationStatus.MACHINE, "BMAG")
    assert result.end_time_s == pytest.approx(35.0)
    assert not result.units[0].control_points[1:]  # CP 0 reached by the setup move, no beam

    engine, _ = make_engine(interlocks=["BMAG"], interrupt_timeout_s=30.0)
    engine.schedule_at(20.0, lambda: engine.clear_interlock("BMAG"))
    assert engine.run().completed


def test_resume_without_hold_is_rejected() -> None:
    engine, rec = make_engine()
    engine.schedule_at(3.0, engine.resume)
    assert engine.run().completed
    assert [(e.name, e.time_s) for e in rec.of_type(ev.CommandRejected)] == [("resume", 3.0)]


# ---------------------------------------------------------------------------------------- robustness


def test_crashing_subscriber_does_not_stop_delivery(caplog: pytest.LogCaptureFixture) -> None:
    engine, rec = make_engine()

    def broken(event: object) -> None:
        raise RuntimeError("subscriber bug")

    engine.bus.subscribe(broken)
    with caplog.at_level(logging.ERROR, logger="simulators.core.bus"):
        result = engine.run()
    assert result.completed
    assert engine.bus.error_count == len(rec.events) > 0
    assert "subscriber bug" in caplog.text


def test_command_from_another_thread_is_applied_through_the_queue() -> None:
    engine, _ = make_engine()
    beam_on = threading.Event()
    posted = threading.Event()

    def on_beam_on(event: ev.BeamOn) -> None:
        if not beam_on.is_set():
            beam_on.set()
            assert posted.wait(10.0), "the other thread did not post its command"

    def operator() -> None:
        beam_on.wait(10.0)
        engine.terminate(code="FROM_THREAD")  # not the sim thread: queued, drained by the pump
        posted.set()

    engine.bus.subscribe(on_beam_on, [ev.BeamOn])
    thread = threading.Thread(target=operator)
    thread.start()
    result = engine.run()
    thread.join(10.0)
    assert (result.termination_status, result.termination_code) == (TerminationStatus.OPERATOR, "FROM_THREAD")
    assert 5.0 <= result.end_time_s <= 5.0 + 2 * engine.clock.command_poll_s


def test_schedule_in_the_past_is_refused() -> None:
    engine, _ = make_engine()
    engine.run()
    with pytest.raises(ValueError, match="already"):
        engine.schedule_at(1.0, lambda: None)


def test_invalid_program_names_the_unit_and_segment() -> None:
    good = make_unit(7)
    bad = dataclasses.replace(good, segments=(*good.segments, Segment(S.BEAM, 1, 5, 1.0, 0.0, 0.0, "dose")))
    with pytest.raises(ValueError, match=r"unit 7 \('Beam 7'\), segment 3"):
        DeliveryEngine(make_program(bad), session_start=START)


# ---------------------------------------------------------------------------------------- determinism, noise


def _positions(result) -> list[np.ndarray]:
    return [
        np.concatenate([np.ravel(v) for v in c.positions.values()])
        for u in result.units
        for c in u.control_points
    ]


def test_same_seed_same_result_different_seed_different_positions() -> None:
    def run(seed: int):
        engine, rec = make_engine(seed=seed)
        engine.schedule_at(20.0, lambda: engine.interlock("DS12"))
        return engine.run(), rec

    a, rec_a = run(7)
    b, rec_b = run(7)
    c, _ = run(8)
    assert json.dumps(rec_a.to_dicts()) == json.dumps(rec_b.to_dicts())
    for pa, pb in zip(_positions(a), _positions(b), strict=True):
        np.testing.assert_array_equal(pa, pb)
    assert any(not np.array_equal(pa, pc) for pa, pc in zip(_positions(a), _positions(c), strict=True))
    planned_gantry = [350.0, 360.0, 362.5]  # CP 0, CP 1, then the interruption point a quarter into seg 2
    actual = [cp.positions["gantry_deg"] for cp in a.units[0].control_points]
    assert all(abs(g - p) < 0.3 for g, p in zip(actual, planned_gantry, strict=True))
    assert any(g != p for g, p in zip(actual, planned_gantry, strict=True))


def test_noise_never_crosses_opposing_leaves() -> None:
    closed = np.zeros((50, 2, 60))  # closed leaf pairs: any noise would cross them half the time
    noise = PositionNoise({"mlc_mm": 0.5, "jaw_y_mm": 1.0}, np.random.default_rng(3))
    out = noise.perturb({"mlc_mm": closed, "jaw_y_mm": np.zeros((50, 2)), "gantry_deg": np.zeros(50)})
    assert np.all(out["mlc_mm"][:, 0] <= out["mlc_mm"][:, 1])
    assert np.all(out["jaw_y_mm"][:, 0] <= out["jaw_y_mm"][:, 1])
    assert np.any(out["mlc_mm"] != 0.0)
    np.testing.assert_array_equal(out["gantry_deg"], np.zeros(50))  # no sd given: unchanged
    np.testing.assert_array_equal(uncross(np.array([[[2.0], [1.0]]]))[0], [[1.5], [1.5]])


def test_noise_sd_matches_the_model() -> None:
    planned = np.full((20000, 2, 1), [[-10.0], [10.0]])
    out = PositionNoise({"mlc_mm": 0.02}, np.random.default_rng(1)).perturb({"mlc_mm": planned})["mlc_mm"]
    assert np.std(out - planned) == pytest.approx(0.02, rel=0.05)


# ---------------------------------------------------------------------------------------- properties

durations = st.one_of(st.just(0.0), st.floats(min_value=0.01, max_value=30.0))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(durations, st.booleans()), min_size=1, max_size=6),
    durations,
    st.floats(min_value=0.0, max_value=1.0),
)
def test_interlock_anywhere_gives_the_piecewise_linear_meterset(
    segs: list[tuple[float, bool]], setup_s: float, where: float
) -> None:
    """MU(t) is piecewise linear over beam segments and flat over setup and beam-off moves."""
    n = len(segs) + 1
    mu_deltas = [10.0 if beam else 0.0 for _, beam in segs]
    cp_mu = np.concatenate([[0.0], np.cumsum(mu_deltas)])
    segments = [Segment(S.SETUP, 0, 0, setup_s, 0.0, 0.0, "gantry")]
    for i, (duration, beam) in enumerate(segs):
        kind = S.BEAM if beam else S.HOLD_MOVE
        segments.append(
            Segment(kind, i, i + 1, duration, mu_deltas[i], 60.0 * 10 / max(duration, 1e-9), "mlc")
        )
    unit = ProgramUnit(
        1,
        "U",
        "MU",
        float(cp_mu[-1]),
        np.arange(n),
        cp_mu,
        {"x_mm": np.arange(n, dtype=float)},
        tuple(segments),
    )
    engine, _ = make_engine(make_program(unit, make_unit(2)))
    total_s = sum(s.duration_s for s in segments)
    stop_s = where * total_s
    engine.schedule_at(stop_s, lambda: engine.interlock("X"))
    result = engine.run()

    times = np.concatenate([[0.0], np.cumsum([s.duration_s for s in segments])])
    expected_mu = np.interp(stop_s, times, np.concatenate([[0.0], cp_mu]))
    u1, u2 = result.units
    cps = u1.control_points
    assert [c.time_s for c in cps] == sorted(c.time_s for c in cps)
    assert all(b.delivered_meterset >= a.delivered_meterset for a, b in itertools.pairwise(cps))
    assert all(c.delivered_meterset <= c.specified_meterset + 1e-9 for c in cps)
    if stop_s < total_s:  # a stop exactly at the end of unit 1 may land before or after its last event
        assert result.termination_status is TerminationStatus.MACHINE
        assert u1.delivered_meterset == pytest.approx(expected_mu, abs=1e-6)
        if stop_s != setup_s:  # at the very instant the setup ends either order is right
            assert u1.delivered == (stop_s > setup_s)
        assert not u2.delivered
    assert u1.end_time_s == pytest.approx(min(stop_s, total_s))


def test_operator_interrupt_during_a_hold_takes_over_and_resume_continues() -> None:
    engine, rec = make_engine()
    engine.schedule_at(10.0, lambda: engine.add_delay(100.0, "gantry stall"))
    engine.schedule_at(12.0, lambda: engine.interrupt("KEY"))
    engine.schedule_at(20.0, engine.resume)
    result = engine.run()
    assert result.completed
    assert result.units[0].end_time_s == pytest.approx(45.0)  # 35 s + 10 s paused (not the 100 s delay)
    states = [(e.time_s, e.new.value) for e in rec.of_type(ev.StateChanged)]
    assert states[3:7] == [(10.0, "BEAM_HOLD"), (12.0, "INTERRUPTED"), (20.0, "READY"), (20.0, "BEAM_ON")]
