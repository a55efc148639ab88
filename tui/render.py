"""Text drawings for the machine views (dials, beam's-eye view, bars): pure functions returning Rich Text.

No Textual here, so each drawing can be unit-tested by its characters. Conventions: IEC 61217 angles,
0 deg at the top of a dial and increasing clockwise; the beam's-eye view has X (bank A left, bank B
right) across and Y (leaf pairs) down, in mm at the isocentre plane.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from rich.text import Text

STATE_STYLES = {
    "BEAM_ON": "bold black on yellow",
    "BEAM_HOLD": "bold black on dark_orange",
    "INTERRUPTED": "bold white on red",
    "TERMINATED": "bold white on dark_red",
    "READY": "bold black on green",
    "PREPARED": "bold black on cyan",
    "COMPLETED": "bold white on blue",
    "STANDBY": "bold white on grey30",
    "OFFLINE": "bold white on grey15",
}


def state_badge(state: str, *, awaiting_beam_on: bool = False) -> Text:
    """The state as a console shows it: a coloured block (yellow for radiation, red for interrupted)."""
    label = "READY - BEAM ON?" if awaiting_beam_on and state == "READY" else state.replace("_", " ")
    return Text(f" {label} ", style=STATE_STYLES.get(state, "bold"))


def dial(angle_deg: float | None, label: str, radius: int = 4) -> Text:
    """A round dial with a needle at ``angle_deg`` (None: no needle), its value below."""
    r = radius
    width, height = 4 * r + 1, 2 * r + 1
    cx, cy = 2 * r, r
    grid = [[" "] * width for _ in range(height)]
    styles = [[""] * width for _ in range(height)]
    for step in range(72):
        a = math.radians(step * 5)
        x, y = cx + round(2 * r * math.sin(a)), cy - round(r * math.cos(a))
        grid[y][x] = "·"
        styles[y][x] = "grey50"
    for tick, mark in ((0, "0"), (90, "+"), (180, "+"), (270, "+")):
        a = math.radians(tick)
        x, y = cx + round(2 * r * math.sin(a)), cy - round(r * math.cos(a))
        grid[y][x] = mark
        styles[y][x] = "bold"
    if angle_deg is not None and math.isfinite(angle_deg):
        a = math.radians(angle_deg % 360.0)
        for i in range(1, 4 * r):
            f = i / (4 * r)
            x = cx + round(2 * r * f * math.sin(a) * 0.85)
            y = cy - round(r * f * math.cos(a) * 0.85)
            if (x, y) != (cx, cy):
                grid[y][x] = "•"
                styles[y][x] = "bold yellow"
    grid[cy][cx] = "o"
    text = Text()
    for y in range(height):
        for x in range(width):
            text.append(grid[y][x], style=styles[y][x] or None)
        text.append("\n")
    value = "---.-" if angle_deg is None else f"{angle_deg % 360.0:5.1f}"
    text.append(f"{label} {value}°".center(width), style="bold")
    return text


def bar(fraction: float, width: int, *, style: str = "green") -> Text:
    """A horizontal progress bar of ``width`` cells."""
    f = min(max(fraction, 0.0), 1.0)
    full = round(f * width)
    text = Text("█" * full, style=style)
    text.append("░" * (width - full), style="grey35")
    return text


def beams_eye_view(
    mlc_mm: np.ndarray | None,
    boundaries_mm: Sequence[float] | None,
    jaw_x_mm: Sequence[float] | None,
    jaw_y_mm: Sequence[float] | None,
    *,
    width: int = 61,
    rows: int = 30,
    half_field_mm: float = 200.0,
) -> Text:
    """Jaws and MLC seen from the source: leaf banks as bars (A from the left, B from the right).

    ``mlc_mm`` is (2, pairs) (bank A, bank B); ``boundaries_mm`` the pairs' Y boundaries. Cells outside
    the jaws are shaded; the central axis is a ``+``.
    """
    scale = (width - 1) / (2 * half_field_mm)

    def col(x_mm: float) -> int:
        return round((x_mm + half_field_mm) * scale)

    jx = tuple(jaw_x_mm) if jaw_x_mm is not None else (-half_field_mm, half_field_mm)
    jy = tuple(jaw_y_mm) if jaw_y_mm is not None else (-half_field_mm, half_field_mm)
    bounds = np.asarray(boundaries_mm, dtype=float) if boundaries_mm is not None else None
    leaves = np.asarray(mlc_mm, dtype=float) if mlc_mm is not None else None
    text = Text()
    row_h = 2 * half_field_mm / rows
    x_of = [c / scale - half_field_mm for c in range(width)]
    pairs = None
    if leaves is not None and bounds is not None and leaves.ndim == 2 and leaves.shape[0] == 2:
        centres = [half_field_mm - (r + 0.5) * row_h for r in range(rows)]
        pairs = np.searchsorted(bounds, centres) - 1  # one call for every row
    for r in range(rows):
        y_mm = half_field_mm - (r + 0.5) * row_h  # top row = +Y (gun-target: Y2 at the top)
        a_col, b_col = -1, width
        if pairs is not None:
            pair = int(pairs[r])
            if 0 <= pair < leaves.shape[1]:
                a_col = col(float(leaves[0, pair]))
                b_col = col(float(leaves[1, pair]))
        in_y = jy[0] <= y_mm <= jy[1]
        run_char, run_style, run_len = "", "", 0
        for c in range(width):
            in_jaws = in_y and jx[0] <= x_of[c] <= jx[1]
            if c <= a_col:
                ch, st = "█", ("dodger_blue2" if in_jaws else "grey42")
            elif c >= b_col:
                ch, st = "█", ("green3" if in_jaws else "grey42")
            elif r == rows // 2 and c == width // 2:
                ch, st = "+", "bold red"
            elif in_jaws:
                ch, st = " ", "on grey11"
            else:
                ch, st = "░", "grey23"
            if (ch, st) == (run_char, run_style):
                run_len += 1
                continue
            if run_len:
                text.append(run_char * run_len, style=run_style)
            run_char, run_style, run_len = ch, st, 1
        text.append(run_char * run_len, style=run_style)
        text.append("\n")
    return text


def clock_text(seconds: float | None) -> str:
    """mm:ss (or h:mm:ss) for a duration; '--:--' when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "--:--"
    s = max(round(seconds), 0)
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m:02d}:{sec:02d}"
