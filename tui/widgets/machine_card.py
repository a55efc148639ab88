"""One machine on the clinic view: state badge, patient and plan, progress, time left, last event."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.message import Message
from textual.widgets import Static

from tui.render import bar, clock_text, state_badge
from tui.snapshot import MachineSnapshot

STATE_CLASSES = {
    "BEAM_ON": "-beam-on",
    "BEAM_HOLD": "-hold",
    "INTERRUPTED": "-interrupted",
    "TERMINATED": "-terminated",
}


class MachineCard(Static):
    """Renders a :class:`MachineSnapshot`; clicking it selects the machine."""

    class Selected(Message):
        def __init__(self, machine_id: str) -> None:
            super().__init__()
            self.machine_id = machine_id

    def __init__(self, machine_id: str, **kwargs) -> None:
        super().__init__(id=f"card-{machine_id}", classes="machine-card", **kwargs)
        self.machine_id = machine_id
        self._last: tuple | None = None

    def show(self, snap: MachineSnapshot, *, selected: bool) -> None:
        self.set_class(selected, "-selected")
        for state, cls in STATE_CLASSES.items():
            self.set_class(snap.state == state, cls)
        key = card_key(snap)
        if key == self._last:
            return  # nothing the card shows has changed: no re-render, no re-layout
        self._last = key
        self.update(render_card(snap))

    def on_click(self) -> None:
        self.post_message(self.Selected(self.machine_id))


def card_key(snap: MachineSnapshot) -> tuple:
    """Everything the card shows, at the resolution it shows it."""
    remaining = None if snap.remaining_s is None else round(snap.remaining_s)
    return (
        snap.state,
        snap.awaiting_beam_on,
        snap.patient,
        snap.plan_label,
        snap.unit_number,
        snap.unit_name,
        snap.unit_count,
        round(snap.delivered, 2),
        snap.specified,
        remaining,
        snap.door_open,
        snap.interlocks,
        snap.hold_reason,
        snap.last_event,
        snap.step,
        snap.busy,
        snap.outcome,
        snap.auto,
        snap.manual,
        snap.beam_on,
    )


def render_card(snap: MachineSnapshot) -> Group:
    head = Table.grid(expand=True)
    head.add_column()
    head.add_column(justify="right")
    mode = "auto" if snap.auto else ("manual" if snap.manual else "")
    head.add_row(
        Text.assemble(
            (snap.machine_id, "bold"), f"  {snap.model_name} ({snap.kind}) · station {snap.station}"
        ),
        Text.assemble(f"{mode}  ", state_badge(snap.state, awaiting_beam_on=snap.awaiting_beam_on)),
    )
    body = Table.grid(padding=(0, 1))
    body.add_column(style="grey70")
    body.add_column()
    body.add_row(
        "Patient", Text.assemble(snap.patient or "-", "   ", ("Plan ", "grey70"), snap.plan_label or "-")
    )
    if snap.unit_number is not None:
        unit = f"{snap.unit_word} {snap.unit_number}/{snap.unit_count} '{snap.unit_name}'"
        body.add_row(
            snap.unit_word,
            Text.assemble(
                f"{unit:28.28s} {snap.delivered:8.2f} / {snap.specified:.2f} {snap.meterset_unit} ",
                bar(snap.fraction_of_unit, 16, style="yellow" if snap.beam_on else "green"),
            ),
        )
    else:
        body.add_row(snap.unit_word, "-")
    alarms = Text()
    alarms.append(
        "door OPEN" if snap.door_open else "door closed", style="bold red" if snap.door_open else ""
    )
    if snap.interlocks:
        alarms.append("   interlock " + ", ".join(snap.interlocks), style="bold red")
    if snap.hold_reason:
        alarms.append(f"   hold: {snap.hold_reason}", style="dark_orange")
    body.add_row("Remaining", Text.assemble(f"{clock_text(snap.remaining_s):8s}  ", alarms))
    last = snap.step if snap.busy and snap.step and snap.unit_number is None else snap.last_event
    body.add_row("Last", Text(last or snap.outcome or "-", overflow="ellipsis", no_wrap=True))
    return Group(head, body)
