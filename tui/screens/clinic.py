"""The clinic view: one card per machine, the selected machine's worklist, the event log."""

from __future__ import annotations

import contextlib

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from tui.snapshot import MachineSnapshot
from tui.widgets.event_log import EventLogPane
from tui.widgets.machine_card import MachineCard

SCENARIO_MARKS = {"pending": ("…", "grey62"), "passed": ("✓", "bold green3"), "failed": ("✗", "bold red")}
SCENARIO_STATES = {
    "waiting": ("waiting", "grey62"),
    "running": ("PLAYING", "bold yellow"),
    "passed": ("PASSED", "bold green3"),
    "failed": ("FAILED", "bold red"),
    "error": ("ERROR", "bold red"),
}


def _when(dicom_dt: str) -> str:
    """A DICOM DT (YYYYMMDDHHMMSS...) as 'YYYY-MM-DD HH:MM'."""
    d = dicom_dt.strip()
    if len(d) < 12 or not d[:12].isdigit():
        return d
    return f"{d[0:4]}-{d[4:6]}-{d[6:8]} {d[8:10]}:{d[10:12]}"


def render_scenario(play) -> Text:
    """The scenario's title, state and each expectation (pending, passed, failed with the message)."""
    label, style = SCENARIO_STATES.get(play.state, (play.state, ""))
    text = Text.assemble(("Scenario ", "bold"), (label, style), "\n", (play.title, "italic"), "\n")
    for line in play.lines():
        mark, mark_style = SCENARIO_MARKS[line.state]
        text.append(f"{mark} ", style=mark_style)
        text.append(line.description)
        if line.message and line.state == "failed":
            text.append(f"\n    {line.message}", style="red")
        text.append("\n")
    return text


class ClinicScreen(Screen):
    """Every machine at a glance; the operator picks a machine and a worklist item here."""

    def compose(self) -> ComposeResult:
        clinic = self.app.clinic
        yield Header(show_clock=False)
        with Horizontal(id="main"):
            with VerticalScroll(id="cards"):
                for machine_id in clinic.machines:
                    yield MachineCard(machine_id)
            with Vertical(id="side"):
                yield Static("Worklist", id="worklist-title")
                table = DataTable(id="worklist", cursor_type="row", zebra_stripes=True)
                table.add_columns("Label", "Patient", "Type", "Scheduled")
                yield table
                yield Static(id="scenario-panel")
        yield EventLogPane(clinic.log, id="log")
        yield Footer()

    def on_mount(self) -> None:
        self._worklist_shown: tuple = ()
        self._worklist_machine = ""
        self.query_one("#scenario-panel").display = self.app.scenario is not None
        self.query_one("#worklist", DataTable).focus()  # up/down pick a workitem at once

    def refresh_from(self, snaps: dict[str, MachineSnapshot], selected: str) -> None:
        if not hasattr(self, "_worklist_shown"):
            return  # not mounted yet
        for card in self.query(MachineCard):
            card.show(snaps[card.machine_id], selected=card.machine_id == selected)
        snap = snaps[selected]
        title = self.query_one("#worklist-title", Static)
        title.update(f"Worklist · {selected} (station {snap.station})" + (" · busy" if snap.busy else ""))
        table = self.query_one("#worklist", DataTable)
        if snap.worklist != self._worklist_shown or selected != self._worklist_machine:
            self._worklist_shown = snap.worklist
            self._worklist_machine = selected
            table.clear()
            for line in snap.worklist:
                table.add_row(
                    line.label, line.patient, line.delivery_type, _when(line.scheduled), key=line.ups_uid
                )
            if snap.selected_uid:
                with contextlib.suppress(Exception):
                    table.move_cursor(row=table.get_row_index(snap.selected_uid))
        if self.app.scenario is not None:
            self.query_one("#scenario-panel", Static).update(render_scenario(self.app.scenario))
        self.query_one("#log", EventLogPane).poll()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key is not None and event.row_key.value:
            self.app.select_workitem(event.row_key.value)

    def on_machine_card_selected(self, message: MachineCard.Selected) -> None:
        self.app.select_machine(message.machine_id)
