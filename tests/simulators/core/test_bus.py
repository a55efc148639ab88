"""EventBus: filtering, unsubscribe, error isolation; events serialise to JSON for golden traces."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from simulators.core import events as ev
from simulators.core.bus import EventBus, EventRecorder
from simulators.core.results import TerminationStatus
from simulators.core.states import MachineState


def test_subscribers_get_events_filtered_by_type() -> None:
    bus = EventBus()
    everything, beams = EventRecorder(), EventRecorder()
    bus.subscribe(everything)
    bus.subscribe(beams, [ev.BeamOn, ev.BeamOff])
    bus.publish(ev.BeamOn("M", 1.0, 1))
    bus.publish(ev.UnitStarted("M", 1.0, 1, "Beam 1"))
    bus.publish(ev.BeamOff("M", 2.0, 1))
    assert everything.type_names() == ["BeamOn", "UnitStarted", "BeamOff"]
    assert beams.type_names() == ["BeamOn", "BeamOff"]


def test_unsubscribe_handle_stops_delivery_even_from_inside_a_callback() -> None:
    bus = EventBus()
    seen: list[float] = []
    handle = None

    def once(event: ev.Event) -> None:
        seen.append(event.time_s)
        handle.unsubscribe()

    handle = bus.subscribe(once)
    bus.publish(ev.BeamOn("M", 1.0, 1))
    bus.publish(ev.BeamOn("M", 2.0, 1))
    assert seen == [1.0]

    rec = EventRecorder()
    stop = bus.subscribe(rec)
    stop()
    bus.publish(ev.BeamOn("M", 3.0, 1))
    assert rec.events == []


def test_failing_subscriber_is_logged_and_the_others_still_run(caplog: pytest.LogCaptureFixture) -> None:
    bus = EventBus()
    before, after = EventRecorder(), EventRecorder()
    bus.subscribe(before)

    def broken(event: ev.Event) -> None:
        raise ZeroDivisionError("boom")

    bus.subscribe(broken)
    bus.subscribe(after)
    with caplog.at_level(logging.ERROR, logger="simulators.core.bus"):
        bus.publish(ev.BeamOn("M", 1.0, 1))
        bus.publish(ev.BeamOff("M", 2.0, 1))
    assert len(before.events) == len(after.events) == 2
    assert bus.error_count == 2
    assert "ZeroDivisionError: boom" in caplog.text
    assert "BeamOff" in caplog.text


def test_events_are_frozen() -> None:
    event = ev.BeamOn("M", 1.0, 1)
    with pytest.raises(AttributeError):
        event.time_s = 2.0  # type: ignore[misc]


def test_to_dict_is_json_ready() -> None:
    events = [
        ev.StateChanged("M", 0.0, MachineState.READY, MachineState.BEAM_ON, "unit 1"),
        ev.AxisSample(
            "M", 1.5, 1, {"mlc_mm": np.array([[-1.0, 2.0], [3.0, 4.0]]), "gantry_deg": np.float64(5)}
        ),
        ev.UnitFinished("M", 3.0, 1, TerminationStatus.MACHINE, "DS12", 62.5, True),
        ev.FaultInjected("M", 3.0, "interlock", {"code": "DS12", "latching": True}),
        ev.MetersetProgress("M", 3.0, 1, float("nan"), 100.0, 0.5),
    ]
    dicts = [e.to_dict() for e in events]
    json.dumps(dicts, allow_nan=False)
    assert dicts[0] == {
        "type": "StateChanged",
        "machine_id": "M",
        "time_s": 0.0,
        "old": "READY",
        "new": "BEAM_ON",
        "reason": "unit 1",
    }
    assert dicts[1]["positions"] == {"mlc_mm": [[-1.0, 2.0], [3.0, 4.0]], "gantry_deg": 5.0}
    assert dicts[2]["termination_status"] == "MACHINE"
    assert dicts[4]["delivered"] is None


def test_recorder_helpers() -> None:
    rec = EventRecorder()
    rec(ev.BeamOn("M", 1.0, 1))
    rec(ev.InterlockRaised("M", 1.0, "DOOR", False))
    assert rec.of_type(ev.InterlockRaised)[0].code == "DOOR"
    assert rec.to_dicts()[0]["type"] == "BeamOn"
