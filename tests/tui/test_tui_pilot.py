"""Pilot tests: an operator drives the console over a real local clinic (embedded TMS, TDW-II on loopback).

Select a workitem, prepare it, try beam on with the door open (refused), beam on, interrupt, resume, beam
on again, inject a fault from the instructor's fault picker, and check what the widgets show and what the
TMS was told. The clock runs paced at 10x; waits are bounded polls on the console's own state.
"""

from __future__ import annotations

import asyncio

import pytest
from textual.widgets import DataTable
from tui_helpers import plain, until

from machine_models import load_model
from tui.app import make_console
from tui.clinic import Clinic, new_handle
from tui.local import default_machines, local_clinic
from tui.screens.machine import MachineScreen
from tui.screens.modals import FaultScreen, HelpScreen
from tui.tracker import EventLog
from tui.widgets.machine_card import MachineCard

SIZE = (150, 44)


def card_text(app, machine_id: str) -> str:
    return plain(app.screen.query_one(f"#card-{machine_id}", MachineCard).content)


def log_texts(clinic, machine_id: str) -> list[str]:
    return [line.text for line in clinic.log.since(0) if line.machine_id == machine_id]


@pytest.fixture
def clinic(tmp_path):
    machines = [m for m in default_machines(2) if m.spec.ae_title.startswith("LINAC")]
    return local_clinic(tmp_path, machines, speed=10.0, seed=7)


def test_operator_session_select_beam_on_interrupt_resume_fault(clinic) -> None:
    async def run() -> None:
        app = make_console(clinic, refresh_hz=20)
        async with app.run_test(size=SIZE) as pilot:
            snap = lambda: clinic.snapshot("LINAC1")  # noqa: E731
            await until(pilot, lambda: len(snap().worklist) == 3, "the LINAC1 worklist (3 sample plans)")
            assert "STANDBY" in card_text(app, "LINAC1")

            # select the VMAT workitem with the cursor keys, as an operator would (the longest beam)
            labels = [line.label for line in snap().worklist]
            target = next(i for i, label in enumerate(labels) if label.startswith("vmat"))
            table = app.screen.query_one("#worklist", DataTable)
            await until(pilot, lambda: table.row_count == 3, "the worklist table filled")
            assert app.focused is table
            for _ in range(target):
                await pilot.press("down")
            if target == 0:  # already highlighted: move away and back so the selection is the cursor's
                await pilot.press("down", "up")
            await until(pilot, lambda: snap().selected.label == labels[target], f"select {labels[target]}")
            chosen = snap().selected.label
            await pilot.press("p")
            await until(pilot, lambda: snap().awaiting_beam_on, "READY, awaiting beam on", timeout_s=30)
            assert snap().plan_label == "vmat"
            await pilot.pause(0.1)
            assert "READY - BEAM ON?" in card_text(app, "LINAC1")

            # door open: the console refuses beam on, and closing it does not start the beam
            await pilot.press("d")
            await until(pilot, lambda: snap().door_open, "door open")
            await pilot.press("B")
            assert "beam on refused: treatment room door open" in log_texts(clinic, "LINAC1")
            await pilot.press("d")
            await until(pilot, lambda: not snap().door_open, "door closed")
            await pilot.pause(0.3)
            assert not snap().beam_on

            # beam on, interrupt, resume, beam on again
            await pilot.press("B")
            await until(pilot, lambda: snap().state == "BEAM_ON", "BEAM_ON")
            await until(pilot, lambda: snap().delivered > 1.0, "MU counting")
            await pilot.press("space")
            await until(pilot, lambda: snap().state == "INTERRUPTED", "INTERRUPTED")
            interrupted_at = snap().delivered
            assert 0.0 < interrupted_at < snap().specified
            await pilot.pause(0.1)
            assert "INTERRUPTED" in card_text(app, "LINAC1")
            await pilot.press("r")
            await until(pilot, lambda: snap().awaiting_beam_on, "READY after resume, awaiting beam on")
            assert snap().delivered == pytest.approx(interrupted_at)
            await pilot.press("B")
            await until(pilot, lambda: snap().delivered > interrupted_at + 0.5, "delivery continues")
            await pilot.press("1")  # instructor: clock 1x, so the rest of the beam outlasts the checks below
            assert clinic.machines["LINAC1"].clock.factor == 1.0

            # the machine view shows the MU counters while the beam is on
            await pilot.press("v")
            await until(pilot, lambda: isinstance(app.screen, MachineScreen), "machine view")
            await pilot.pause(0.2)
            view_text = plain(app.screen.query_one("#machine-view").content)
            assert "Primary" in view_text
            assert "Gantry" in view_text
            assert "BEAM ON" in view_text
            await pilot.press("v")

            # instructor: inject the dose interlock from the fault picker
            await pilot.press("f")
            await until(pilot, lambda: isinstance(app.screen, FaultScreen), "fault picker")
            names = [f.name for f in app.screen.faults]
            for _ in range(names.index("interlock_dose")):
                await pilot.press("down")
            await pilot.press("enter")
            await until(pilot, lambda: snap().state == "TERMINATED", "TERMINATED by the interlock")
            assert snap().interlocks == ("DOS1",)
            await until(pilot, lambda: "CANCELED" in snap().outcome, "UPS CANCELED with a partial record")
            await pilot.pause(0.2)
            text = card_text(app, "LINAC1")
            assert "interlock DOS1" in text
            assert "TERMINATED" in text
            await until(
                pilot,
                lambda: any(t.startswith("RO-63 store record") for t in log_texts(clinic, "LINAC1")),
                "the RO-63 store line in the event log",
            )
            assert "INTERLOCK DOS1 (latching)" in log_texts(clinic, "LINAC1")

            # the latching interlock stays: the next beam on is refused until it is reset
            await until(pilot, lambda: not snap().busy, "device idle")
            assert clinic.machines["LINAC1"].latched == {"DOS1": True}
            await pilot.press("x")
            await until(pilot, lambda: snap().interlocks == (), "interlock reset")
        assert chosen.startswith("vmat")

    asyncio.run(run())


def test_refusals_without_a_session_and_clock_controls() -> None:
    log = EventLog()
    model = load_model("truebeam-millennium120")
    clinic = Clinic([new_handle(f"LINAC{i}", model, f"LINAC{i}", log) for i in (1, 2)], log=log)

    async def run() -> None:
        app = make_console(clinic, refresh_hz=20)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: clinic.ready.is_set(), "clinic started")
            for key in ("B", "space", "r", "T", "p", "f"):
                await pilot.press(key)
            assert isinstance(app.screen, FaultScreen)
            await pilot.press("enter")  # no session: the fault is refused, not injected
            texts = log_texts(clinic, "LINAC1")
            assert "beam on refused: no session prepared" in texts
            assert "interrupt refused: no session running" in texts
            assert "resume refused: no session running" in texts
            assert "terminate refused: no session running" in texts
            assert "prepare refused: no worklist item selected" in texts
            assert any(t.startswith("fault 'Door opened' not injected") for t in texts)
            await pilot.press("4")
            assert clinic.speed == 60.0
            await pilot.press("full_stop")
            assert clinic.paused
            assert "PAUSED" in app.sub_title
            await pilot.press("right_square_bracket")
            assert app.selected == "LINAC2"
            await pilot.press("d")
            assert clinic.snapshot("LINAC2").door_open  # the door works without a session
            await pilot.press("question_mark")
            assert isinstance(app.screen, HelpScreen)

    asyncio.run(run())


def test_afterloader_session_source_out_and_stuck_source(tmp_path) -> None:
    machines = [m for m in default_machines(1) if m.spec.ae_title == "HDR1"]
    if not machines:
        pytest.skip("no afterloader simulator in this tree")
    clinic = local_clinic(tmp_path, machines, speed=10.0, seed=3)

    async def run() -> None:
        app = make_console(clinic, refresh_hz=20)
        async with app.run_test(size=SIZE) as pilot:
            snap = lambda: clinic.snapshot("HDR1")  # noqa: E731
            await until(pilot, lambda: len(snap().worklist) == 3, "the HDR1 worklist (3 sample plans)")
            table = app.screen.query_one("#worklist", DataTable)
            await until(pilot, lambda: table.row_count == 3, "the worklist table filled")
            labels = [line.label for line in snap().worklist]
            target = next(i for i, label in enumerate(labels) if label.startswith("hdr-cylinder"))
            for _ in range(target):
                await pilot.press("down")
            if target == 0:
                await pilot.press("down", "up")
            await until(pilot, lambda: snap().selected.label == labels[target], "select the cylinder")
            await pilot.press("p")
            await until(pilot, lambda: snap().awaiting_beam_on, "ready for source out", timeout_s=30)
            await pilot.press("v")
            await pilot.press("B")
            source_out = lambda: float(snap().positions.get("source_position_mm", -1.0)) >= 0  # noqa: E731
            await until(pilot, source_out, "the source out in the channel")
            await until(pilot, lambda: snap().delivered > 0, "dwell time counting")
            await pilot.pause(0.2)
            text = plain(app.screen.query_one("#machine-view").content)
            assert "OUT," in text
            assert "Check cable channel checked OK" in text
            assert "Ir-192" in text
            clinic.inject("HDR1", "source_stuck")
            await until(pilot, lambda: "SOURCE_STUCK" in snap().interlocks, "SOURCE_STUCK interlock")
            await until(pilot, lambda: snap().state == "TERMINATED", "session ended MACHINE")
            await until(pilot, lambda: "CANCELED" in snap().outcome, "UPS CANCELED with a partial record")
            assert 0 < snap().delivered < snap().specified

    asyncio.run(run())


def test_a_refresh_after_the_last_screen_went_is_ignored() -> None:
    """The refresh timer may fire while the app shuts down, when the screen stack is already empty."""
    model = load_model("truebeam-millennium120")
    log = EventLog()
    clinic = Clinic([new_handle("LINAC1", model, "LINAC1", log)], log=log)
    app = make_console(clinic, refresh_hz=0)  # never run: no screen on its stack
    app.refresh_screen()
    assert app.frames == 0
