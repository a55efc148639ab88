"""What the console shows about one machine at one moment: an immutable snapshot, no simulator objects.

Widgets render only from :class:`MachineSnapshot`; the tracker (:mod:`tui.tracker`) builds them from bus
events, so a widget never holds a reference to an engine or a device.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

# State names as a console shows them, beside the engine's MachineState values
OFFLINE = "OFFLINE"
IDLE = "STANDBY"


@dataclass(frozen=True, slots=True)
class WorklistLine:
    """One worklist item as the operator picks it."""

    ups_uid: str
    label: str
    patient: str
    delivery_type: str
    scheduled: str


@dataclass(frozen=True, slots=True)
class MachineSnapshot:
    """One machine's console state.

    ``delivered``/``specified`` are the current unit's meterset (``meterset_unit`` MU, or s for
    time-based devices), on the program's scale (a continuation counts from its own start).
    ``remaining_s`` is the planned time left in the session (None when nothing is loaded).
    ``positions`` are the latest sampled axis positions keyed like ``ProgramUnit.cp_positions``.
    """

    machine_id: str
    kind: str
    model_name: str
    station: str
    state: str = IDLE
    beam_on: bool = False
    awaiting_beam_on: bool = False
    hold_reason: str = ""
    door_open: bool = False
    interlocks: tuple[str, ...] = ()
    patient: str = ""
    plan_label: str = ""
    workitem_label: str = ""
    unit_number: int | None = None
    unit_name: str = ""
    unit_index: int = 0
    unit_count: int = 0
    unit_word: str = "Beam"
    meterset_unit: str = "MU"
    delivered: float = 0.0
    specified: float = 0.0
    meterset_offset: float = 0.0
    session_fraction: float = 0.0
    time_s: float = 0.0
    remaining_s: float | None = None
    segment_kind: str = ""
    limiting_axis: str = ""
    dose_rate_set_per_min: float = 0.0
    positions: Mapping[str, np.ndarray] = field(default_factory=dict)
    last_event: str = ""
    step: str = ""
    outcome: str = ""
    auto: bool = False
    manual: bool = True
    busy: bool = False
    worklist: tuple[WorklistLine, ...] = ()
    selected_uid: str = ""
    clock_factor: float = 1.0
    clock_paused: bool = False
    extra: Mapping[str, object] = field(default_factory=dict)

    @property
    def fraction_of_unit(self) -> float:
        """Delivered share of the current unit (0..1)."""
        if self.specified <= 0:
            return 0.0
        return min(max(self.delivered / self.specified, 0.0), 1.0)

    @property
    def finished(self) -> bool:
        """The last session ended (COMPLETED or TERMINATED)."""
        return self.state in ("COMPLETED", "TERMINATED")

    @property
    def selected(self) -> WorklistLine | None:
        return next((w for w in self.worklist if w.ups_uid == self.selected_uid), None)
