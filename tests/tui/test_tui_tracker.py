"""The Textual-free parts of the console: event folding, time left, the log, the drawings."""

from __future__ import annotations

import numpy as np
import pytest
from tui_helpers import plain
from tui_replay import START, play_into

from machine_models import load_model
from simulators.core import events as ev
from simulators.core.results import TerminationStatus
from simulators.core.states import MachineState
from simulators.plans.samples.linac import sample_linac_plan
from tui.clinic import new_handle
from tui.faults import faults_for
from tui.render import beams_eye_view, clock_text, dial, state_badge
from tui.tracker import EventLog, MachineTracker, describe

MODEL = load_model("truebeam-millennium120")


def test_tracker_follows_a_real_session_to_the_frozen_time() -> None:
    log = EventLog()
    handle = new_handle("LINAC1", MODEL, "LINAC1", log)
    engine = play_into(handle, sample_linac_plan("vmat"), 30.0, patient="P (1)")
    snap = handle.tracker.snapshot()
    assert snap.state == "BEAM_ON"
    assert snap.beam_on
    assert snap.time_s == pytest.approx(30.0)
    # beam on at 2 s (the key, 2 s after BeamOnAwaited at 0 s): the meterset is the engine's at 30 s
    progress = [e for e in engine.events if isinstance(e, ev.MetersetProgress) and e.time_s <= 30.0]
    assert snap.delivered == pytest.approx(progress[-1].delivered)
    assert 0 < snap.delivered < snap.specified
    assert snap.specified == pytest.approx(280.0)
    total = engine.result.end_time_s
    assert snap.remaining_s == pytest.approx(total - 30.0, abs=0.6)  # within one sample interval
    assert snap.limiting_axis == "gantry"
    assert snap.dose_rate_set_per_min > 0
    assert np.asarray(snap.positions["mlc_mm"]).shape == (2, 60)
    texts = [line.text for line in log.since(0)]
    assert texts[:4] == [
        "state PREPARED (session loaded)",
        "beam 1 'VMAT arc' loaded",
        "state READY (unit 1 started)",
        "beam 1 ready: awaiting beam on",
    ]
    assert "BEAM ON (beam 1)" in texts
    assert all(line.time_s <= 30.0 for line in log.since(0))


def test_tracker_interlock_door_and_hold() -> None:
    tracker = MachineTracker("L1", "linac", "TrueBeam", "L1", EventLog())
    t = 1.0
    for event in (
        ev.StateChanged("m", t, MachineState.STANDBY, MachineState.PREPARED, ""),
        ev.DoorChanged("m", t, True),
        ev.InterlockRaised("m", t, "DOOR", False),
        ev.BeamHeld("m", t, 1, "servo"),
        ev.StateChanged("m", t, MachineState.PREPARED, MachineState.READY, ""),
    ):
        tracker.on_event(event)
    snap = tracker.snapshot()
    assert snap.door_open
    assert snap.interlocks == ("DOOR",)
    assert snap.hold_reason == ""  # READY clears the hold reason
    tracker.on_event(ev.InterlockCleared("m", 2.0, "DOOR"))
    tracker.on_event(ev.DoorChanged("m", 2.0, False))
    snap = tracker.snapshot()
    assert (snap.door_open, snap.interlocks, snap.time_s) == (False, (), 2.0)
    assert snap.last_event == "door closed"


def test_describe_skips_high_rate_events_and_names_codes() -> None:
    assert describe(ev.AxisSample("m", 0.0, 1, {})) is None
    assert describe(ev.MetersetProgress("m", 0.0, 1, 1.0, 2.0, 0.5)) is None
    text, level = describe(ev.UnitFinished("m", 3.0, 2, TerminationStatus.MACHINE, "DOS1", 12.5, True))
    assert (text, level) == ("beam 2 ended MACHINE DOS1 at 12.5 MU", "info")
    assert describe(ev.InterlockRaised("m", 0.0, "POWER", True)) == ("INTERLOCK POWER (latching)", "alarm")
    text, _ = describe(ev.UnitStarted("m", 0.0, 3, "ch 3"), unit_word="Channel", meterset_unit="s")
    assert text == "channel 3 'ch 3' loaded"


def test_event_log_since_and_bound() -> None:
    log = EventLog(maxlen=3)
    for i in range(5):
        log.add("L1", float(i), f"line {i}")
    assert [line.text for line in log.since(0)] == ["line 2", "line 3", "line 4"]
    assert [line.text for line in log.since(4)] == ["line 4"]
    assert log.last_seq == 5


def test_dial_needle_points_the_iec_way() -> None:
    up = plain(dial(0.0, "G", radius=4)).splitlines()
    right = plain(dial(90.0, "G", radius=4)).splitlines()
    assert "•" in up[2]
    assert "•" not in up[6]
    assert "•" in right[4][9:]
    assert "•" not in right[4][:8]
    assert "G  90.0°" in right[-1]
    assert "---.-" in plain(dial(None, "G"))


def test_beams_eye_view_draws_leaf_banks_to_their_positions() -> None:
    boundaries = [-20.0, -10.0, 0.0, 10.0, 20.0]
    mlc = np.array([[-10.0, -20.0, -20.0, -10.0], [10.0, 0.0, 20.0, 10.0]])
    lines = plain(
        beams_eye_view(mlc, boundaries, (-20, 20), (-20, 20), width=41, rows=4, half_field_mm=20)
    ).splitlines()
    # row 0 is +Y (pair 3): bank A to -10 mm = column 10, bank B from +10 mm = column 30
    assert lines[0][:11] == "█" * 11
    assert lines[0][11] == " "
    assert lines[0][30:] == "█" * 11
    # row 2 is pair 1: bank A at -20 (col 0), bank B at 0 mm (col 20)
    assert lines[2][0] == "█"
    assert lines[2][1] != "█"
    assert lines[2][20:] == "█" * 21


def test_clock_text_and_badges() -> None:
    assert clock_text(None) == "--:--"
    assert clock_text(65.4) == "01:05"
    assert clock_text(3725) == "1:02:05"
    assert "READY - BEAM ON?" in plain(state_badge("READY", awaiting_beam_on=True))
    assert "BEAM ON" in plain(state_badge("BEAM_ON"))


def test_fault_list_per_kind() -> None:
    linac = {f.name for f in faults_for("linac")}
    assert {"power_loss", "door_open", "beam_hold", "interlock_dose", "mlc_leaf_lag", "gantry_stall"} <= linac
    assert "interlock_dose" not in {f.name for f in faults_for("afterloader")}


def test_start_is_fixed_for_replays() -> None:
    assert START.year == 2026


def test_view_registry_per_kind_and_generic_fallback() -> None:
    from tui.views import GenericView, register_view, registered_kinds, view_for
    from tui.views.base import MachineView
    from tui.views.linac import LinacView

    assert view_for("linac") is LinacView
    assert "linac" in registered_kinds()
    # kinds without a simulator yet get the generic counters view, never a fake drawing
    assert view_for("tomotherapy") is GenericView
    assert view_for("gamma_knife") is GenericView

    @register_view("test_kind")
    class TestKindView(MachineView):
        def render_snapshot(self, snap, model):
            return "drawn"

    try:
        assert view_for("test_kind") is TestKindView
    finally:
        from tui.views import _VIEWS

        _VIEWS.pop("test_kind", None)
