"""The afterloader view: channels with their dwell positions, the source and its timer, the check cable,
the installed source's decay at treatment time.

Everything comes from the snapshot: the session's program (immutable data: per channel the dwell
positions and corrected dwell times; axes ``source_position_mm``, ``check_cable_mm``, ``channel``, see
:mod:`simulators.devices.afterloader`) and the latest axis sample.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from machine_models.decay import decay_fraction, elapsed_days
from machine_models.schema import MachineModel
from simulators.core.program import DeliveryProgram, SegmentKind
from tui.snapshot import MachineSnapshot
from tui.views import register_view
from tui.views.base import MachineView, status_table

SOURCE = "source_position_mm"
CHECK_CABLE = "check_cable_mm"
CHANNEL = "channel"
TRACK_CELLS = 36


@dataclass(frozen=True)
class ChannelLayout:
    """One unit (channel in one pulse) of the program: where the source dwells and for how long."""

    name: str
    channel: int
    dwell_positions_mm: tuple[float, ...]
    dwell_times_s: tuple[float, ...]

    @property
    def total_s(self) -> float:
        return float(sum(self.dwell_times_s))


def channel_layouts(program: DeliveryProgram) -> list[ChannelLayout]:
    """Per program unit, its dwells (segments limited by ``"dwell"``) at their source positions."""
    layouts = []
    for unit in program.units:
        source = np.asarray(unit.cp_positions.get(SOURCE, ()), dtype=float)
        channel = np.asarray(unit.cp_positions.get(CHANNEL, (0,)), dtype=float)
        positions, times = [], []
        for seg in unit.segments:
            if seg.kind is SegmentKind.BEAM and seg.limiting_axis == "dwell" and seg.meterset_delta > 0:
                positions.append(float(source[seg.start_cp]) if source.size else 0.0)
                times.append(float(seg.meterset_delta))
        layouts.append(
            ChannelLayout(
                unit.name, int(channel.ravel()[0]) if channel.size else 0, tuple(positions), tuple(times)
            )
        )
    return layouts


def _value(snap: MachineSnapshot, key: str) -> float | None:
    value = snap.positions.get(key)
    return None if value is None else float(np.asarray(value, dtype=float).ravel()[0])


def _track(
    layout: ChannelLayout, span_mm: tuple[float, float], source_mm: float | None, status: str, done_s: float
) -> Text:
    """The dwell span of a channel: dwell positions (delivered ones green), the source where it is."""
    lo, hi = span_mm
    cells = ["─"] * TRACK_CELLS
    styles = ["grey35"] * TRACK_CELLS

    def cell(mm: float) -> int:
        return min(max(round((mm - lo) / (hi - lo) * (TRACK_CELLS - 1)), 0), TRACK_CELLS - 1)

    elapsed = 0.0
    for mm, t in zip(layout.dwell_positions_mm, layout.dwell_times_s, strict=True):
        elapsed += t
        c = cell(mm)
        cells[c] = "●"
        delivered = status == "done" or (status == "active" and elapsed <= done_s + 1e-9)
        styles[c] = "green3" if delivered else "dodger_blue2"
    text = Text()
    arriving = status == "active" and source_mm is not None and 0 <= source_mm < lo
    text.append("▶" if arriving else "┤", style="bold yellow" if arriving else "grey50")
    if status == "active" and source_mm is not None and lo <= source_mm <= hi:
        c = cell(source_mm)
        cells[c] = "▼"
        styles[c] = "bold yellow"
    for ch, st in zip(cells, styles, strict=True):
        text.append(ch, style=st)
    text.append("├", style="grey50")
    return text


@register_view("afterloader")
class AfterloaderView(MachineView):
    """Channels and dwells, source position and timer, check cable, source decay."""

    def render_snapshot(self, snap: MachineSnapshot, model: MachineModel) -> RenderableType:
        program = snap.extra.get("program") if snap.extra else None
        layouts = channel_layouts(program) if isinstance(program, DeliveryProgram) else []
        source_mm = _value(snap, SOURCE)
        dwells = [p for lay in layouts for p in lay.dwell_positions_mm] or [0.0, 100.0]
        span = (min(dwells) - 10.0, max(dwells) + 10.0)
        channels = Table(box=None, header_style="bold", padding=(0, 1))
        channels.add_column("Ch", justify="right")
        channels.add_column("Applicator")
        channels.add_column(f"Dwells {span[0]:.0f}-{span[1]:.0f} mm")
        channels.add_column("Time s", justify="right")
        channels.add_column("")
        for index, layout in enumerate(layouts):
            status = self._status(snap, index)
            done = snap.delivered if status == "active" else (layout.total_s if status == "done" else 0.0)
            mark = {"done": Text("✓", style="green3"), "active": Text("◀", style="bold yellow")}.get(
                status, Text("")
            )
            channels.add_row(
                str(layout.channel),
                Text(layout.name[:18], style="bold" if status == "active" else ""),
                _track(layout, span, source_mm, status, done),
                f"{done:6.1f}/{layout.total_s:6.1f}",
                mark,
            )
        layout_table = Table.grid(padding=(0, 2))
        layout_table.add_row(
            Group(Text("Channels", style="bold"), channels if layouts else Text("no session loaded")),
            self._panel(snap, model),
        )
        return layout_table

    @staticmethod
    def _status(snap: MachineSnapshot, index: int) -> str:
        if snap.state == "COMPLETED" or index < snap.unit_index:
            return "done"
        if index == snap.unit_index and snap.unit_number is not None and snap.state not in ("STANDBY",):
            return "active"
        return "pending"

    def _panel(self, snap: MachineSnapshot, model: MachineModel) -> Table:
        t = status_table(snap)
        t.add_row("", "")
        source_mm = _value(snap, SOURCE)
        channel = _value(snap, CHANNEL)
        if source_mm is None:
            where = "-"
        elif source_mm < 0:
            where = Text("in the safe", style="green3")
        else:
            moving = snap.segment_kind == "beam" and snap.limiting_axis == "source_transit"
            verb = "in transit" if moving else "dwelling"
            where = Text(f"OUT, {verb} at {source_mm:6.1f} mm (channel {channel:.0f})", style="bold yellow")
        t.add_row("Source", where)
        t.add_row("Timer", f"{snap.delivered:7.1f} / {snap.specified:.1f} s (this channel)")
        t.add_row("Check cable", self._check_cable(snap))
        t.add_row("Decay", self._decay(snap, model))
        return t

    @staticmethod
    def _check_cable(snap: MachineSnapshot) -> Text:
        position = _value(snap, CHECK_CABLE)
        if snap.limiting_axis == "check_cable":
            where = "" if position is None else f" at {position:6.1f} mm"
            return Text(f"running{where}", style="cyan")
        if snap.limiting_axis in ("dwell", "source_transit") or snap.state == "COMPLETED":
            return Text("channel checked OK", style="green3")
        return Text("not run yet" if snap.unit_number is not None else "-")

    @staticmethod
    def _decay(snap: MachineSnapshot, model: MachineModel) -> Text:
        al = model.afterloader
        when = snap.extra.get("session_start") if snap.extra else None
        if al is None or not isinstance(when, datetime):
            return Text("-")
        source = al.source
        days = elapsed_days(source.calibration_datetime, when)
        factor = decay_fraction(source.half_life_days, days)
        now_u = source.reference_air_kerma_rate_ugy_per_h * factor
        return Text(f"{source.isotope} {now_u:,.0f} U: {factor:.3f} of calibration ({days:.1f} d)")
