"""Manual mode (``beam_on_key=True``): the operator's beam-on key releases every beam, as on a console."""

from __future__ import annotations

import dataclasses
from datetime import datetime

import numpy as np
import pytest

from simulators.core import events as ev
from simulators.core.bus import EventBus, EventRecorder
from simulators.core.engine import BEAM_ON_TIMEOUT_CODE, BEAM_ON_WAIT_SHARE_KEY, DeliveryEngine
from simulators.core.program import DeliveryProgram, ProgramUnit, Segment, SegmentKind
from simulators.core.results import TerminationStatus
from simulators.core.states import MachineState

START = datetime(2024, 5, 6, 8, 30, 0)
S = SegmentKind


def unit(number: int, segments: tuple[Segment, ...] | None = None) -> ProgramUnit:
    """5 s setup, then 0 -> 50 -> 100 MU in 10 s and 20 s."""
    segs = segments or (
        Segment(S.SETUP, 0, 0, 5.0, 0.0, 0.0, "gantry"),
        Segment(S.BEAM, 0, 1, 10.0, 50.0, 300.0, "dose"),
        Segment(S.BEAM, 1, 2, 20.0, 50.0, 150.0, "mlc"),
    )
    return ProgramUnit(
        number=number,
        name=f"Beam {number}",
        meterset_unit="MU",
        specified_meterset=100.0,
        cp_plan_indices=np.array([0, 1, 2]),
        cp_meterset=np.array([0.0, 50.0, 100.0]),
        cp_positions={"gantry_deg": np.array([0.0, 10.0, 20.0])},
        segments=segs,
    )


def engine_for(*units: ProgramUnit, **kw) -> tuple[DeliveryEngine, EventRecorder]:
    bus = EventBus()
    rec = EventRecorder()
    bus.subscribe(rec)
    program = DeliveryProgram("TB1", "linac", units or (unit(1), unit(2)), {})
    return DeliveryEngine(program, bus=bus, session_start=START, beam_on_key=True, **kw), rec


def press_when_awaited(engine: DeliveryEngine, rec: EventRecorder, delay_s: float) -> list[float]:
    """Press the key ``delay_s`` after each BeamOnAwaited; return the press times."""
    presses: list[float] = []

    def on_awaited(event: ev.BeamOnAwaited) -> None:
        def press() -> None:
            presses.append(engine.env.now)
            engine.press_beam_on()

        engine.schedule_at(event.time_s + delay_s, press)

    engine.bus.subscribe(on_awaited, (ev.BeamOnAwaited,))
    return presses


def test_each_unit_waits_ready_for_the_key_then_delivers() -> None:
    engine, rec = engine_for()
    presses = press_when_awaited(engine, rec, 7.0)
    result = engine.run()
    assert presses == [5.0 + 7.0, 12.0 + 30.0 + 5.0 + 7.0]  # after each setup move
    awaited = rec.of_type(ev.BeamOnAwaited)
    assert [(e.unit_number, e.time_s) for e in awaited] == [(1, 5.0), (2, 47.0)]
    beam_on = [e.time_s for e in rec.of_type(ev.BeamOn)]
    assert beam_on == [12.0, 54.0]
    assert result.termination_status is TerminationStatus.NORMAL
    u1 = result.units[0]
    assert u1.delivered_meterset == pytest.approx(100.0)
    assert u1.beam_on_time_s == pytest.approx(30.0)
    assert u1.limiting_axis_share[BEAM_ON_WAIT_SHARE_KEY] == pytest.approx(7.0 / 42.0)
    state_at_wait = [e for e in rec.of_type(ev.StateChanged) if e.time_s == 5.0]
    assert state_at_wait == [] or state_at_wait[-1].new is MachineState.READY
    assert engine.state is MachineState.COMPLETED


def test_key_with_door_open_is_rejected_and_not_remembered() -> None:
    engine, rec = engine_for(unit(1))
    engine.schedule_at(1.0, lambda: engine.set_door(True))
    engine.schedule_at(6.0, engine.press_beam_on)  # refused: door open
    engine.schedule_at(8.0, lambda: engine.set_door(False))  # closing the door does not start the beam
    engine.schedule_at(20.0, engine.press_beam_on)
    result = engine.run()
    rejected = rec.of_type(ev.CommandRejected)
    assert [(e.time_s, e.name, e.reason) for e in rejected] == [(6.0, "beam_on", "treatment room door open")]
    assert [e.time_s for e in rec.of_type(ev.BeamOn)] == [20.0]
    assert result.units[0].delivered_meterset == pytest.approx(100.0)


def test_after_an_interrupt_resume_needs_the_key_again() -> None:
    engine, rec = engine_for(unit(1))
    engine.schedule_at(5.0, engine.press_beam_on)
    engine.schedule_at(10.0, engine.interrupt)
    engine.schedule_at(12.0, engine.resume)
    engine.schedule_at(13.0, engine.press_beam_on)
    result = engine.run()
    assert [e.time_s for e in rec.of_type(ev.BeamOn)] == [5.0, 13.0]
    assert [e.time_s for e in rec.of_type(ev.BeamOnAwaited)] == [12.0]  # the 5 s press came first
    assert result.units[0].delivered_meterset == pytest.approx(100.0)
    assert result.end_time_s == pytest.approx(13.0 + 25.0)


def test_step_and_shoot_and_automatic_holds_do_not_need_the_key() -> None:
    segs = (
        Segment(S.BEAM, 0, 1, 10.0, 50.0, 300.0, "dose"),
        Segment(S.HOLD_MOVE, 1, 1, 4.0, 0.0, 0.0, "mlc"),
        Segment(S.BEAM, 1, 2, 20.0, 50.0, 150.0, "mlc"),
    )
    engine, rec = engine_for(unit(1, segs))
    engine.schedule_at(0.0, engine.press_beam_on)
    engine.schedule_at(20.0, lambda: engine.add_delay(3.0, "servo"))
    result = engine.run()
    assert [e.time_s for e in rec.of_type(ev.BeamOn)] == [0.0, 14.0, 23.0]
    assert len(rec.of_type(ev.BeamOnAwaited)) == 1
    assert result.end_time_s == pytest.approx(37.0)


def test_no_key_within_the_timeout_ends_operator_and_nothing_delivered() -> None:
    engine, rec = engine_for(unit(1), interrupt_timeout_s=60.0)
    result = engine.run()
    assert result.termination_status is TerminationStatus.OPERATOR
    assert result.termination_code == BEAM_ON_TIMEOUT_CODE
    assert result.end_time_s == pytest.approx(65.0)
    assert not rec.of_type(ev.BeamOn)


def test_key_rejected_without_manual_mode_and_when_beam_is_on() -> None:
    bus = EventBus()
    rec = EventRecorder()
    bus.subscribe(rec)
    program = DeliveryProgram("TB1", "linac", (unit(1),), {})
    auto = DeliveryEngine(program, bus=bus, session_start=START)
    auto.schedule_at(6.0, auto.press_beam_on)
    auto.run()
    assert [e.reason for e in rec.of_type(ev.CommandRejected)] == [
        "not in manual mode: the beam switches on by itself"
    ]
    engine, rec2 = engine_for(unit(1))
    engine.schedule_at(5.0, engine.press_beam_on)
    engine.schedule_at(6.0, engine.press_beam_on)
    engine.run()
    assert [e.reason for e in rec2.of_type(ev.CommandRejected)] == ["the beam is already on"]


def test_key_pressed_before_the_setup_move_ends_is_kept_for_the_unit() -> None:
    engine, rec = engine_for(dataclasses.replace(unit(1), number=3))
    engine.schedule_at(1.0, engine.press_beam_on)
    engine.run()
    assert [e.time_s for e in rec.of_type(ev.BeamOn)] == [5.0]
    assert not rec.of_type(ev.BeamOnAwaited)
