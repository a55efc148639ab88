"""The linac view: gantry and collimator dials, jaws and MLC in a beam's-eye view, MU counters."""

from __future__ import annotations

import numpy as np
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from machine_models.schema import MachineModel
from tui.render import beams_eye_view, dial
from tui.snapshot import MachineSnapshot
from tui.views import register_view
from tui.views.base import MachineView, status_table

AXIS_NAMES = {
    "dose": "dose rate (MU at maximum rate)",
    "gantry": "gantry speed",
    "collimator": "collimator speed",
    "mlc": "MLC leaf speed",
    "jaws": "jaw speed",
    "jaw": "jaw speed",
    "couch": "couch speed",
}


def _angle(snap: MachineSnapshot, key: str) -> float | None:
    value = snap.positions.get(key)
    return None if value is None else float(np.asarray(value, dtype=float))


def _pair(snap: MachineSnapshot, key: str):
    value = snap.positions.get(key)
    return None if value is None else tuple(float(v) for v in np.asarray(value, dtype=float).ravel()[:2])


@register_view("linac")
class LinacView(MachineView):
    """Dials, beam's-eye view and the dosimetry panel of a C-arm linac."""

    bev_rows = 24
    dials_width = 17
    panel_width = 54

    def bev_width(self) -> int:
        """Columns for the beam's-eye view: what the dials and the panel leave, at most two per row so a
        square field looks square (terminal cells are about twice as tall as wide); odd, >= 25."""
        square = 2 * self.bev_rows + 1
        available = self.size.width - self.dials_width - self.panel_width - 8 if self.size.width else square
        width = min(max(available, 25), square)
        return width if width % 2 else width - 1

    def render_snapshot(self, snap: MachineSnapshot, model: MachineModel) -> RenderableType:
        linac = model.linac
        mlc = snap.positions.get("mlc_mm")
        boundaries = linac.mlc.leaf_boundaries_mm if linac is not None and linac.mlc is not None else None
        half = max(abs(boundaries[0]), abs(boundaries[-1])) if boundaries else 200.0
        jaws = [abs(v) for key in ("jaw_x_mm", "jaw_y_mm") for v in (_pair(snap, key) or ())]
        if jaws:  # zoom to the jaw opening, as a console's field view does
            half = min(half, max(max(jaws) * 1.25, 50.0))
        bev = beams_eye_view(
            None if mlc is None else np.asarray(mlc, dtype=float),
            boundaries,
            _pair(snap, "jaw_x_mm"),
            _pair(snap, "jaw_y_mm"),
            width=self.bev_width(),
            rows=self.bev_rows,
            half_field_mm=half,
        )
        dials = Table.grid()
        dials.add_row(dial(_angle(snap, "gantry_deg"), "Gantry"))
        dials.add_row(Text(""))
        dials.add_row(dial(_angle(snap, "collimator_deg"), "Coll."))
        layout = Table.grid(padding=(0, 2))
        layout.add_row(
            dials,
            Group(Text(f"Beam's-eye view (collimator frame, ±{half:.0f} mm)", style="bold"), bev),
            self._panel(snap),
        )
        return layout

    def _panel(self, snap: MachineSnapshot) -> Table:
        t = status_table(snap)
        unit = snap.meterset_unit
        t.add_row("", "")
        t.add_row(
            "Primary", Text(f"{snap.delivered:8.2f} {unit}", style="bold yellow" if snap.beam_on else "bold")
        )
        t.add_row("Secondary", Text(f"{snap.delivered:8.2f} {unit}", style="yellow" if snap.beam_on else ""))
        t.add_row("Set", f"{snap.specified:8.2f} {unit}")
        rate = snap.dose_rate_set_per_min if snap.beam_on else 0.0
        t.add_row("Dose rate", f"{rate:6.0f} {unit}/min")
        segment = {"beam": "beam on", "hold_move": "beam-off move", "setup": "setup move"}.get(
            snap.segment_kind, snap.segment_kind or "-"
        )
        t.add_row("Segment", segment)
        t.add_row("Limiting", AXIS_NAMES.get(snap.limiting_axis, snap.limiting_axis or "-"))
        couch = _angle(snap, "couch_deg")
        t.add_row("Couch", "-" if couch is None else f"{couch % 360:5.1f}°")
        return t
