"""Typed, immutable events the delivery engine publishes on the bus.

Every event carries ``machine_id`` and ``time_s`` (simulated seconds since the session started).
``to_dict()`` gives a JSON-ready dict with a ``"type"`` key (the class name), for traces and golden files.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np

from simulators.core.results import TerminationStatus
from simulators.core.states import MachineState


def _jsonable(value: Any) -> Any:
    """Plain JSON types for enums, numpy values, mappings and sequences (NaN/inf become None)."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


@dataclass(frozen=True)
class Event:
    """Base of every engine event."""

    machine_id: str
    time_s: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: ``{"type": <class name>, <field>: <value>, ...}``."""
        out: dict[str, Any] = {"type": type(self).__name__}
        for f in dataclasses.fields(self):
            out[f.name] = _jsonable(getattr(self, f.name))
        return out


@dataclass(frozen=True)
class StateChanged(Event):
    old: MachineState
    new: MachineState
    reason: str


@dataclass(frozen=True)
class UnitStarted(Event):
    unit_number: int
    unit_name: str


@dataclass(frozen=True)
class SegmentStarted(Event):
    """A segment starts; ``duration_s`` is its planned duration after any scaling fault."""

    unit_number: int
    segment_index: int
    kind: str
    limiting_axis: str
    duration_s: float


@dataclass(frozen=True)
class BeamOn(Event):
    unit_number: int


@dataclass(frozen=True)
class BeamOff(Event):
    unit_number: int


@dataclass(frozen=True)
class BeamOnRefused(Event):
    """Beam on was due but refused (interlock active or door open); the engine waits for the cause."""

    unit_number: int
    reason: str


@dataclass(frozen=True)
class BeamOnAwaited(Event):
    """Manual mode: the unit is ready and waits for the operator's beam-on key."""

    unit_number: int


@dataclass(frozen=True)
class MetersetProgress(Event):
    """Meterset reached by one unit, on the scale of ``ProgramUnit.cp_meterset`` (linac: this session's
    cumulative meterset from 0); ``specified`` is the unit's ``specified_meterset``.

    ``session_fraction`` is the share (0..1) of the whole session's beam quantity delivered so far.
    """

    unit_number: int
    delivered: float
    specified: float
    session_fraction: float


@dataclass(frozen=True)
class AxisSample(Event):
    """Planned axis positions interpolated at ``time_s`` (published only when sampling is enabled)."""

    unit_number: int
    positions: Mapping[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class BeamHeld(Event):
    """Automatic beam hold (fault or servo): beam paused, meterset flat, resumes where it stopped."""

    unit_number: int
    reason: str


@dataclass(frozen=True)
class BeamResumed(Event):
    unit_number: int


@dataclass(frozen=True)
class InterlockRaised(Event):
    code: str
    latching: bool


@dataclass(frozen=True)
class InterlockCleared(Event):
    code: str


@dataclass(frozen=True)
class DoorChanged(Event):
    is_open: bool


@dataclass(frozen=True)
class FaultInjected(Event):
    """A fault command was applied (interlock, hold, add_delay, scale_remaining_durations)."""

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OperatorAction(Event):
    """An operator command was applied (interrupt, resume, terminate, clear_interlock, door, sampling)."""

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CommandRejected(Event):
    """A command that made no sense in the current state (resume when nothing is held, ...)."""

    name: str
    reason: str


@dataclass(frozen=True)
class UnitFinished(Event):
    """``delivered`` is the cumulative meterset reached; ``started`` is False when no control point of
    the unit was reached (the unit gets no record)."""

    unit_number: int
    termination_status: TerminationStatus
    termination_code: str
    delivered: float
    started: bool


@dataclass(frozen=True)
class DeliveryFinished(Event):
    termination_status: TerminationStatus
    termination_code: str
