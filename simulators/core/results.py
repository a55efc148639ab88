"""What really happened during a delivery: the input of every record writer and summary."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

import numpy as np


class TerminationStatus(StrEnum):
    """DICOM Treatment Termination Status (3008,002A)."""

    NORMAL = "NORMAL"
    OPERATOR = "OPERATOR"
    MACHINE = "MACHINE"
    UNKNOWN = "UNKNOWN"


@dataclass(frozen=True, slots=True)
class DeliveredControlPoint:
    """One control point as the machine reached it (or the point where delivery stopped).

    ``plan_cp_index`` is the plan's Control Point Index. Metersets are cumulative for the beam in this
    session. ``positions`` are the *actual* axis values (with noise), keyed like
    :attr:`simulators.core.program.ProgramUnit.cp_positions`. ``time_s`` is simulated seconds since the
    session started.
    """

    plan_cp_index: int
    time_s: float
    specified_meterset: float
    delivered_meterset: float
    dose_rate_set_per_min: float
    dose_rate_delivered_per_min: float
    positions: Mapping[str, np.ndarray]


@dataclass(frozen=True, slots=True)
class UnitResult:
    """The outcome of one unit (beam/channel/shot)."""

    number: int
    name: str
    meterset_unit: str
    specified_meterset: float
    delivered_meterset: float
    termination_status: TerminationStatus
    termination_code: str
    start_time_s: float
    end_time_s: float
    beam_on_time_s: float
    limiting_axis_share: Mapping[str, float]  # axis -> fraction of this unit's time it limited
    control_points: tuple[DeliveredControlPoint, ...]
    delivered: bool = True  # False when the unit never started (earlier interruption)

    @property
    def total_time_s(self) -> float:
        return self.end_time_s - self.start_time_s


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """The whole session. ``session_start`` is the wall-clock date/time that simulated 0 s maps to."""

    machine_id: str
    device_kind: str
    session_start: datetime
    seed: int
    units: tuple[UnitResult, ...]
    termination_status: TerminationStatus
    termination_code: str
    end_time_s: float
    events: tuple[object, ...] = field(default_factory=tuple)

    @property
    def completed(self) -> bool:
        return self.termination_status is TerminationStatus.NORMAL
