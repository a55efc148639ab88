"""The fault library: one small class per fault, typed parameters, registered by name.

A fault's parameters are its dataclass fields (the scenario file gives them by name; the loader checks
their types). :meth:`Fault.apply` acts through a :class:`FaultContext` when the fault's trigger fires:
engine faults use the engine's faults API (:mod:`simulators.core.engine`), network faults return an
:class:`~simulators.dicom.tdd.scu.InjectedNetworkFault` for the DICOM attempts they hit, the TMS fault
sends a real UPS cancel request, device faults crash the device process (it restarts and recovers from
its journal). Every fault has its own random stream (``ctx.rng``) spawned from the scenario seed.

Add a fault: subclass :class:`Fault` as a dataclass, set ``name``, ``kind`` and ``summary``, implement
``apply`` (or ``network_fault``), and decorate it with :func:`register_fault`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np

from simulators.core.engine import DeliveryEngine
from simulators.core.program import ProgramUnit, SegmentKind
from simulators.core.results import TerminationStatus
from simulators.dicom.tdd.scu import InjectedNetworkFault


class DeviceCrash(BaseException):
    """Raised inside the device's thread to kill its process mid-step (no handler may catch it)."""


class FaultContext(Protocol):
    """What a fault may act on when it fires (given by the runner)."""

    engine: DeliveryEngine | None
    rng: np.random.Generator
    machine: str

    def note(self, what: str, **details: Any) -> None:
        """Add a line to the trace (the fault's own account of what it did)."""

    def request_cancel(self, reason: str) -> int:
        """Send UPS N-ACTION Request Cancel for the workitem being delivered; wait for the device to hear."""

    def crash_at(self, checkpoint: str) -> None:
        """Crash the device when it reaches ``checkpoint`` of this workitem."""

    def current_unit(self) -> tuple[ProgramUnit, float] | None:
        """The unit being delivered and the simulated time it started (None between units)."""

    def later(self, delay_s: float, action: Callable[[DeliveryEngine], None]) -> None:
        """Run ``action(engine)`` ``delay_s`` simulated seconds from now on this machine, in the next
        session if this one ends first (a door that closes after the beam stopped)."""


@dataclass
class Fault:
    """Base of every fault (subclasses add their parameters as fields)."""

    name: ClassVar[str] = ""
    kind: ClassVar[str] = "engine"  # engine | network | tms | device
    summary: ClassVar[str] = ""
    device_kinds: ClassVar[tuple[str, ...]] = ()  # empty: any device kind

    def apply(self, ctx: FaultContext) -> None:
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def _engine(self, ctx: FaultContext) -> DeliveryEngine:
        if ctx.engine is None:
            raise RuntimeError(f"fault {self.name!r} needs a running delivery")
        return ctx.engine


FAULTS: dict[str, type[Fault]] = {}


def register_fault(cls: type[Fault]) -> type[Fault]:
    """Make ``cls`` available to scenario files under ``cls.name``."""
    if not cls.name or cls.name in FAULTS:
        raise ValueError(f"fault class {cls.__name__}: name {cls.name!r} is empty or taken")
    FAULTS[cls.name] = cls
    return cls


# ------------------------------------------------------------------------------------------- engine
@register_fault
@dataclass
class InterlockFault(Fault):
    name: ClassVar[str] = "interlock"
    summary: ClassVar[str] = "machine interlock: beam off at once, session ends MACHINE with the code"
    code: str = "INTERLOCK"
    latching: bool = False

    def apply(self, ctx: FaultContext) -> None:
        self._engine(ctx).interlock(self.code, latching=self.latching)


@register_fault
@dataclass
class ClearInterlockFault(Fault):
    name: ClassVar[str] = "clear_interlock"
    summary: ClassVar[str] = "the operator clears a (latched) interlock"
    code: str = "INTERLOCK"

    def apply(self, ctx: FaultContext) -> None:
        self._engine(ctx).clear_interlock(self.code)


@register_fault
@dataclass
class BeamHoldFault(Fault):
    name: ClassVar[str] = "beam_hold"
    summary: ClassVar[str] = "automatic beam hold; resumes after duration_s (none: until the hold timeout)"
    reason: str = "BEAM_HOLD"
    duration_s: float | None = None

    def apply(self, ctx: FaultContext) -> None:
        engine = self._engine(ctx)
        if self.duration_s is None:
            engine.hold(self.reason)
        else:
            engine.add_delay(self.duration_s, self.reason)


@register_fault
@dataclass
class MlcLeafStuckFault(Fault):
    """The leaf stops where it is; the MLC controller interlocks once the planned position of that leaf
    differs from where it stuck by more than ``tolerance_mm`` (set your machine's tolerance)."""

    name: ClassVar[str] = "mlc_leaf_stuck"
    summary: ClassVar[str] = "an MLC leaf stops; interlock when its planned position leaves the tolerance"
    device_kinds: ClassVar[tuple[str, ...]] = ("linac",)
    leaf: int | str = "random"  # 1-based leaf index in the plan's order (bank A then bank B), or "random"
    tolerance_mm: float = 1.0
    code: str = "MLC"

    def apply(self, ctx: FaultContext) -> None:
        engine = self._engine(ctx)
        current = ctx.current_unit()
        if current is None or "mlc_mm" not in current[0].cp_positions:
            ctx.note("no MLC motion to block: the fault has no effect")
            return
        unit, unit_start_s = current
        raw = np.asarray(unit.cp_positions["mlc_mm"], dtype=float)
        positions = raw.reshape(raw.shape[0], -1)  # (control point, leaf): bank A then bank B
        now = float(engine.env.now)
        timeline = _segment_timeline(unit, unit_start_s)
        if isinstance(self.leaf, str):
            moving = np.flatnonzero(np.ptp(positions, axis=0) > self.tolerance_mm)
            if moving.size == 0:
                ctx.note("no leaf moves more than the tolerance in this unit: the fault has no effect")
                return
            leaf = int(ctx.rng.choice(moving))
        else:
            leaf = int(self.leaf) - 1
        stuck = _position_at(positions[:, leaf], timeline, now)
        for start_s, duration_s, a_cp, b_cp in timeline:
            end_s = start_s + duration_s
            if end_s < now:
                continue
            a, b = positions[a_cp, leaf], positions[b_cp, leaf]
            t0 = max(start_s, now)
            for t in np.linspace(t0, end_s, 50):
                frac = (t - start_s) / duration_s if duration_s > 0 else 1.0
                if abs(a + frac * (b - a) - stuck) > self.tolerance_mm:
                    ctx.note(f"leaf {leaf + 1} stuck at {stuck:.1f} mm", leaf=leaf + 1)
                    engine.schedule_at(float(t), lambda: engine.interlock(self.code, latching=False))
                    return
        ctx.note(f"leaf {leaf + 1} stuck at {stuck:.1f} mm; it was not to move again", leaf=leaf + 1)


@register_fault
@dataclass
class MlcLeafLagFault(Fault):
    """A lagging leaf makes the MLC controller hold the beam for it: the rest of the delivery takes
    ``slowdown`` times longer (the engine stretches every remaining segment)."""

    name: ClassVar[str] = "mlc_leaf_lag"
    summary: ClassVar[str] = "an MLC leaf lags: the remaining delivery takes `slowdown` times longer"
    device_kinds: ClassVar[tuple[str, ...]] = ("linac",)
    leaf: int = 1
    slowdown: float = 1.5

    def apply(self, ctx: FaultContext) -> None:
        self._engine(ctx).scale_remaining_durations(self.slowdown, f"MLC leaf {self.leaf} lagging")


@register_fault
@dataclass
class GantryStallFault(Fault):
    name: ClassVar[str] = "gantry_stall"
    summary: ClassVar[str] = "the gantry stops: beam held for duration_s (none: until the hold timeout)"
    device_kinds: ClassVar[tuple[str, ...]] = ("linac",)
    duration_s: float | None = 5.0

    def apply(self, ctx: FaultContext) -> None:
        engine = self._engine(ctx)
        if self.duration_s is None:
            engine.hold("GANTRY_STALL")
        else:
            engine.add_delay(self.duration_s, "GANTRY_STALL")


@register_fault
@dataclass
class GantryOverspeedFault(Fault):
    name: ClassVar[str] = "gantry_overspeed"
    summary: ClassVar[str] = "gantry faster than planned: the speed monitor interlocks"
    device_kinds: ClassVar[tuple[str, ...]] = ("linac",)
    code: str = "GANTRY_SPEED"
    latching: bool = False

    def apply(self, ctx: FaultContext) -> None:
        self._engine(ctx).interlock(self.code, latching=self.latching)


@register_fault
@dataclass
class DoseRateDropFault(Fault):
    """The dose rate falls to ``fraction`` of the planned rate: the rest of the session takes
    1/fraction times longer (the planned rate stays the "set" rate in the record)."""

    name: ClassVar[str] = "dose_rate_drop"
    summary: ClassVar[str] = "dose rate falls to `fraction` of planned: the rest takes 1/fraction longer"
    device_kinds: ClassVar[tuple[str, ...]] = ("linac",)
    fraction: float = 0.5

    def apply(self, ctx: FaultContext) -> None:
        if not 0 < self.fraction <= 1:
            raise ValueError(f"dose_rate_drop fraction must be in (0, 1], got {self.fraction}")
        reason = f"dose rate at {100 * self.fraction:.0f} % of planned"
        self._engine(ctx).scale_remaining_durations(1.0 / self.fraction, reason)


@register_fault
@dataclass
class DoorOpenFault(Fault):
    name: ClassVar[str] = "door_open"
    summary: ClassVar[str] = (
        "treatment-room door opens (DOOR interlock with the beam on); closes after close_after_s"
    )
    close_after_s: float | None = None

    def apply(self, ctx: FaultContext) -> None:
        self._engine(ctx).set_door(True)
        if self.close_after_s is not None:
            ctx.later(self.close_after_s, lambda engine: engine.set_door(False))


@register_fault
@dataclass
class PowerLossFault(Fault):
    """Mains power fails: the beam stops at once (interlock ``POWER_LOSS``) and the device process dies.
    With ``keeps_record`` the machine kept the delivered meterset (as a dosimetry backup does) and the
    restarted device stores the partial record; without it the restarted device has no record."""

    name: ClassVar[str] = "power_loss"
    summary: ClassVar[str] = "power fails: beam off, the device dies and restarts (record kept or not)"
    keeps_record: bool = True

    def apply(self, ctx: FaultContext) -> None:
        engine = self._engine(ctx)
        if not self.keeps_record:
            raise DeviceCrash("power loss during delivery")
        engine.interlock("POWER_LOSS", latching=False)
        ctx.crash_at("record_journaled")


@register_fault
@dataclass
class OperatorInterruptFault(Fault):
    name: ClassVar[str] = "operator_interrupt"
    summary: ClassVar[str] = (
        "operator presses beam off; resumes after resume_after_s (none: times out, OPERATOR)"
    )
    code: str = "OPERATOR_INTERRUPT"
    resume_after_s: float | None = None

    def apply(self, ctx: FaultContext) -> None:
        engine = self._engine(ctx)
        engine.interrupt(self.code)
        if self.resume_after_s is not None:
            engine.schedule_at(float(engine.env.now) + self.resume_after_s, engine.resume)


@register_fault
@dataclass
class OperatorTerminateFault(Fault):
    name: ClassVar[str] = "operator_terminate"
    summary: ClassVar[str] = "operator terminates the session: OPERATOR with the code"
    code: str = "OPERATOR_STOP"

    def apply(self, ctx: FaultContext) -> None:
        self._engine(ctx).terminate(TerminationStatus.OPERATOR, self.code)


# ------------------------------------------------------------------------------------------ tms, device
@register_fault
@dataclass
class UpsCancelRequestFault(Fault):
    name: ClassVar[str] = "ups_cancel_request"
    kind: ClassVar[str] = "tms"
    summary: ClassVar[str] = "the TMS sends N-ACTION Request Cancel for the workitem in delivery"
    reason: str = "cancel requested by the TMS"

    def apply(self, ctx: FaultContext) -> None:
        status = ctx.request_cancel(self.reason)
        ctx.note(f"TMS answered the cancel request with 0x{status:04X}", status=f"0x{status:04X}")


@register_fault
@dataclass
class DeviceCrashFault(Fault):
    """The device process dies (at a workflow checkpoint, or during the delivery with an engine trigger)
    and is restarted: it recovers from its journal (claims, unsent records)."""

    name: ClassVar[str] = "device_crash"
    kind: ClassVar[str] = "device"
    summary: ClassVar[str] = "the device process dies and restarts, recovering from its journal"

    def apply(self, ctx: FaultContext) -> None:
        raise DeviceCrash(f"device {ctx.machine} crashed")


# --------------------------------------------------------------------------------------------- network
@dataclass
class NetworkFault(Fault):
    """A fault in the DICOM layer: hits ``count`` attempts of the operations its trigger selects."""

    kind: ClassVar[str] = "network"
    count: int = 1

    def network_fault(self) -> InjectedNetworkFault:
        raise NotImplementedError

    def apply(self, ctx: FaultContext) -> None:  # network faults act through network_fault()
        raise NotImplementedError


@register_fault
@dataclass
class TmsUnreachableFault(NetworkFault):
    name: ClassVar[str] = "tms_unreachable"
    summary: ClassVar[str] = "no association can be made (TMS or OST down) for `count` attempts"
    count: int = 3

    def network_fault(self) -> InjectedNetworkFault:
        return InjectedNetworkFault("peer unreachable", refuse_association=True)


@register_fault
@dataclass
class AssociationAbortFault(NetworkFault):
    name: ClassVar[str] = "association_abort"
    summary: ClassVar[str] = "association aborted before the request, or after it but before the response"
    phase: str = "after"

    def network_fault(self) -> InjectedNetworkFault:
        if self.phase not in ("before", "after"):
            raise ValueError(f"association_abort phase must be 'before' or 'after', got {self.phase!r}")
        return InjectedNetworkFault(f"association aborted {self.phase} the request", abort=self.phase)


@register_fault
@dataclass
class StoreRefusedFault(NetworkFault):
    name: ClassVar[str] = "store_refused"
    summary: ClassVar[str] = "the OST answers C-STORE with a failure status (default 0xA700 out of resources)"
    status: int = 0xA700

    def network_fault(self) -> InjectedNetworkFault:
        return InjectedNetworkFault(f"C-STORE refused with 0x{self.status:04X}", status=self.status)


@register_fault
@dataclass
class StoreTimeoutFault(NetworkFault):
    name: ClassVar[str] = "store_timeout"
    summary: ClassVar[str] = "the OST stores the object but its response never arrives (DIMSE timeout)"

    def network_fault(self) -> InjectedNetworkFault:
        return InjectedNetworkFault("response lost: DIMSE timeout", abort="after")


@register_fault
@dataclass
class SlowResponseFault(NetworkFault):
    name: ClassVar[str] = "slow_response"
    summary: ClassVar[str] = "the peer answers after delay_s (a timeout if beyond the DIMSE timeout)"
    delay_s: float = 5.0

    def network_fault(self) -> InjectedNetworkFault:
        return InjectedNetworkFault(f"response delayed {self.delay_s:g} s", delay_s=self.delay_s)


# ------------------------------------------------------------------------------------------- helpers
def _segment_timeline(unit: ProgramUnit, start_s: float) -> list[tuple[float, float, int, int]]:
    """(start_s, duration_s, start_cp, end_cp) of the unit's segments as planned from the unit's start."""
    t = start_s
    out = []
    for seg in unit.segments:
        if seg.kind is not SegmentKind.SETUP:
            out.append((t, float(seg.duration_s), seg.start_cp, seg.end_cp))
        t += float(seg.duration_s)
    return out


def _position_at(values: np.ndarray, timeline: list[tuple[float, float, int, int]], now: float) -> float:
    for start_s, duration_s, a_cp, b_cp in timeline:
        if start_s <= now <= start_s + duration_s:
            frac = (now - start_s) / duration_s if duration_s > 0 else 1.0
            return float(values[a_cp] + frac * (values[b_cp] - values[a_cp]))
    return float(values[timeline[-1][3]] if timeline else values[0])


FaultFactory = Callable[..., Fault]


def _register_device_kind_faults() -> None:
    """Each device kind's own faults register themselves in their module (when that device is installed)."""
    import contextlib
    import importlib

    for module in ("scenarios.afterloader_faults",):
        with contextlib.suppress(ImportError):  # the device kind is not part of this installation
            importlib.import_module(module)


_register_device_kind_faults()
