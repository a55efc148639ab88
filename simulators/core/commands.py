"""Commands to a running delivery: faults and operator actions, one API for every front end.

Network threads and the console post them with :meth:`DeliveryEngine.post` (thread-safe queue drained by
a SimPy pump process); scenarios and SimPy processes on the sim thread call :meth:`DeliveryEngine.apply`
or the engine's convenience methods. See :mod:`simulators.core.engine` for what each one does.
"""

from __future__ import annotations

from dataclasses import dataclass

from simulators.core.results import TerminationStatus


@dataclass(frozen=True, slots=True)
class Command:
    """Base of every command."""

    @property
    def name(self) -> str:
        return _NAMES[type(self)]


@dataclass(frozen=True, slots=True)
class Interlock(Command):
    """Machine interlock: beam off at once, the session ends MACHINE with ``code``."""

    code: str
    latching: bool = True


@dataclass(frozen=True, slots=True)
class ClearInterlock(Command):
    code: str


@dataclass(frozen=True, slots=True)
class Hold(Command):
    """Automatic beam hold until :class:`Resume`."""

    reason: str


@dataclass(frozen=True, slots=True)
class Resume(Command):
    """Resume a beam hold or an operator interrupt."""


@dataclass(frozen=True, slots=True)
class Interrupt(Command):
    """Operator interrupt (beam off key): resumable by :class:`Resume` within the timeout."""

    code: str = "OPERATOR_INTERRUPT"


@dataclass(frozen=True, slots=True)
class Terminate(Command):
    """Operator stop: the session ends with ``status`` and ``code``."""

    status: TerminationStatus = TerminationStatus.OPERATOR
    code: str = ""


@dataclass(frozen=True, slots=True)
class AddDelay(Command):
    """Hold the beam (and motion) for ``seconds``, then resume automatically."""

    seconds: float
    reason: str


@dataclass(frozen=True, slots=True)
class ScaleRemainingDurations(Command):
    """Multiply the rest of the current segment and every later segment's duration by ``factor``."""

    factor: float
    reason: str


@dataclass(frozen=True, slots=True)
class SetDoor(Command):
    is_open: bool


@dataclass(frozen=True, slots=True)
class SetSampling(Command):
    """Publish AxisSample/MetersetProgress every ``interval_s`` simulated seconds (None: off)."""

    interval_s: float | None


@dataclass(frozen=True, slots=True)
class BeamOnKey(Command):
    """Manual mode: the operator's beam-on key releases the beam (engine option ``beam_on_key``)."""


@dataclass(frozen=True, slots=True)
class DeviceFault(Command):
    """A device-specific fault its driver models itself (an afterloader's stuck source, a battery retraction).

    The engine only records it, as ``FaultInjected(name=fault, params=dict(params))``, so that records,
    summaries and traces see it; what it does to the delivery comes with it (e.g. an interlock).
    """

    fault: str
    params: tuple[tuple[str, object], ...] = ()


_NAMES: dict[type, str] = {
    Interlock: "interlock",
    ClearInterlock: "clear_interlock",
    Hold: "hold",
    Resume: "resume",
    Interrupt: "interrupt",
    Terminate: "terminate",
    AddDelay: "add_delay",
    ScaleRemainingDurations: "scale_remaining_durations",
    SetDoor: "door",
    SetSampling: "sampling",
    BeamOnKey: "beam_on",
    DeviceFault: "device_fault",
}

FAULT_COMMANDS = (Interlock, Hold, AddDelay, ScaleRemainingDurations)
