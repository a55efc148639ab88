"""The base of every machine view, and the generic one for kinds without their own drawing."""

from __future__ import annotations

import dataclasses

import numpy as np
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from machine_models.schema import MachineModel
from tui.render import bar, clock_text, state_badge
from tui.snapshot import MachineSnapshot


class MachineView(Static):
    """Draws one machine from its snapshots; subclasses override :meth:`render_snapshot`."""

    DEFAULT_CSS = """
    MachineView { height: auto; padding: 0 1; }
    """

    _shown: object = None

    def show(self, snap: MachineSnapshot, model: MachineModel) -> None:
        """Redraw from ``snap`` unless nothing has changed since the last one (same snapshot fields)."""
        remaining = None if snap.remaining_s is None else round(snap.remaining_s)
        scalars = dataclasses.replace(snap, positions={}, extra={}, time_s=0.0, remaining_s=None)
        key = (scalars, remaining, id(snap.positions), tuple(id(v) for v in snap.extra.values()))
        if key == self._shown:
            return
        self._shown = key
        self.update(self.render_snapshot(snap, model))

    def render_snapshot(self, snap: MachineSnapshot, model: MachineModel) -> RenderableType:
        raise NotImplementedError


def status_table(snap: MachineSnapshot) -> Table:
    """Session status lines shared by every view (state, patient, unit, meterset, time, alarms)."""
    t = Table.grid(padding=(0, 1))
    t.add_column(style="grey70", justify="right")
    t.add_column()
    t.add_row("State", state_badge(snap.state, awaiting_beam_on=snap.awaiting_beam_on))
    t.add_row("Patient", snap.patient or "-")
    t.add_row("Plan", snap.plan_label or "-")
    if snap.unit_number is not None:
        t.add_row(
            snap.unit_word,
            f"{snap.unit_number} '{snap.unit_name}'  ({snap.unit_index + 1} of {snap.unit_count})",
        )
    t.add_row(
        "Delivered",
        Text.assemble(
            f"{snap.delivered:7.2f} / {snap.specified:.2f} {snap.meterset_unit} ",
            bar(snap.fraction_of_unit, 12, style="yellow" if snap.beam_on else "green"),
        ),
    )
    if snap.meterset_offset:
        t.add_row("Continuation", f"from {snap.meterset_offset:.2f} {snap.meterset_unit} already delivered")
    t.add_row("Remaining", clock_text(snap.remaining_s))
    t.add_row("Door", Text("OPEN", style="bold red") if snap.door_open else Text("closed"))
    t.add_row(
        "Interlocks",
        Text(", ".join(snap.interlocks), style="bold red") if snap.interlocks else Text("none"),
    )
    if snap.hold_reason:
        t.add_row("Beam hold", Text(snap.hold_reason, style="bold dark_orange"))
    return t


class GenericView(MachineView):
    """Counters and axis positions for a kind that has no drawing of its own yet."""

    def render_snapshot(self, snap: MachineSnapshot, model: MachineModel) -> RenderableType:
        positions = Table("Axis", "Position", box=None, header_style="bold")
        for axis, value in sorted(snap.positions.items()):
            arr = np.asarray(value, dtype=float)
            text = f"{float(arr):.2f}" if arr.ndim == 0 else f"{arr.size} values"
            positions.add_row(axis, text)
        return Group(
            Text(f"{model.model_name} ({snap.kind}): no dedicated view for this kind yet", style="italic"),
            status_table(snap),
            positions,
        )
