"""The machine view: the kind's own drawing of one machine, and that machine's events."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from tui.snapshot import MachineSnapshot
from tui.views import view_for
from tui.widgets.event_log import EventLogPane


class MachineScreen(Screen):
    """One machine, live: its view is chosen by device kind from the view registry."""

    def __init__(self, machine_id: str) -> None:
        super().__init__(name=f"machine-{machine_id}")
        self.machine_id = machine_id

    def compose(self) -> ComposeResult:
        clinic = self.app.clinic
        handle = clinic.machines[self.machine_id]
        yield Header(show_clock=False)
        yield Static(id="machine-title")
        with VerticalScroll(id="machine-body"):
            yield view_for(handle.kind)(id="machine-view")
        log = EventLogPane(clinic.log, id="machine-log")
        log.machine_filter = self.machine_id
        yield log
        yield Footer()

    def on_mount(self) -> None:
        self.ready = True

    def refresh_from(self, snaps: dict[str, MachineSnapshot], selected: str) -> None:
        if not getattr(self, "ready", False):
            return  # the timer may fire between push_screen and compose
        snap = snaps[self.machine_id]
        model = self.app.clinic.machines[self.machine_id].model
        self.query_one("#machine-title", Static).update(
            f"[b]{snap.machine_id}[/b]  {model.manufacturer} {model.model_name} · station {snap.station}"
            f" · {snap.step or snap.outcome or ''}"
        )
        self.query_one("#machine-view").show(snap, model)
        self.query_one("#machine-log", EventLogPane).poll()
