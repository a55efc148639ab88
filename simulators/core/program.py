"""The device-agnostic delivery program every engine run executes.

Each device kind turns its typed plan into a :class:`DeliveryProgram`: an ordered list of units (beams,
channels, shots, ...) whose control points carry axis positions and a cumulative beam quantity (MU, or
seconds for time-based devices), and whose segments carry a duration, a beam rate and the axis that
limited them. Durations come from :mod:`machine_models.kinematics`; the engine only plays them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np


class SegmentKind(StrEnum):
    """What happens during a segment."""

    SETUP = "setup"  # beam off: axes move to the unit's first control point (between units)
    BEAM = "beam"  # beam on; axes may move at the same time (dynamic)
    HOLD_MOVE = "hold_move"  # beam held while axes move (step-and-shoot, energy/wedge change)


@dataclass(frozen=True, slots=True)
class Segment:
    """One step of a unit, from control point ``start_cp`` to ``end_cp`` (indices into the unit).

    A SETUP segment has ``start_cp == end_cp == 0`` and moves from the previous unit's last position.
    ``beam_rate_per_min`` is the meterset rate actually used (dose rate after modulation; 0 beam off).
    ``axis_times_s`` gives, per axis group, the time that axis alone would need; the largest is
    ``limiting_axis`` ("dose" when the meterset at maximum rate is slowest).
    """

    kind: SegmentKind
    start_cp: int
    end_cp: int
    duration_s: float
    meterset_delta: float
    beam_rate_per_min: float
    limiting_axis: str
    axis_times_s: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ProgramUnit:
    """One deliverable unit (linac beam, afterloader channel, GK shot, tomo projection block).

    ``cp_positions`` maps an axis name (``"gantry_deg"``, ``"mlc_mm"``, ``"jaw_x_mm"``, ...) to an
    array whose first dimension is the control point. ``cp_meterset`` is the cumulative beam quantity
    to deliver at each control point of *this session* (already clipped for continuations).
    ``cp_plan_indices`` maps to the plan's Control Point Index for the record.
    """

    number: int
    name: str
    meterset_unit: str  # "MU" or "s"
    specified_meterset: float
    cp_plan_indices: np.ndarray
    cp_meterset: np.ndarray
    cp_positions: Mapping[str, np.ndarray]
    segments: tuple[Segment, ...]  # first may be SETUP; then one per control-point interval
    meterset_offset: float = 0.0  # continuation: meterset already delivered before this session

    @property
    def total_time_s(self) -> float:
        return float(sum(s.duration_s for s in self.segments))

    @property
    def beam_on_time_s(self) -> float:
        return float(sum(s.duration_s for s in self.segments if s.kind is SegmentKind.BEAM))


@dataclass(frozen=True, slots=True)
class DeliveryProgram:
    """Everything the engine needs to deliver one session on one machine.

    ``axis_noise_sd`` gives the standard deviation of the noise the engine adds to "actual" positions
    of each axis (same units as the axis), from the machine model.
    """

    machine_id: str
    device_kind: str
    units: tuple[ProgramUnit, ...]
    axis_noise_sd: Mapping[str, float] = field(default_factory=dict)

    @property
    def total_time_s(self) -> float:
        return float(sum(u.total_time_s for u in self.units))
