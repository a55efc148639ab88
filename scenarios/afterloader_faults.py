"""Afterloader faults for scenarios, on :class:`simulators.devices.afterloader_faults.AfterloaderFaults`.

Each takes the afterloader's own targeting (``channel``, ``pulse``, ``dwell``, ``into_s``; none: at once,
or for the check-cable faults the next check-cable run) and is armed when its scenario trigger fires
(default: when the session starts). ``door_open`` of the general library works on an afterloader too
(the engine's DOOR interlock retracts a source that is out).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from scenarios.faults import Fault, FaultContext, register_fault


def _helper(fault: Fault, ctx: FaultContext):
    from simulators.devices.afterloader_faults import AfterloaderFaults

    engine = fault._engine(ctx)
    retraction_s = getattr(ctx, "emergency_retraction_s", None)
    return AfterloaderFaults(engine, emergency_retraction_s=retraction_s or 30.0)


@dataclass
class _Where(Fault):
    device_kinds: ClassVar[tuple[str, ...]] = ("afterloader",)
    channel: int | None = None
    pulse: int | None = None
    dwell: int | None = None
    into_s: float = 0.0

    def _at(self) -> dict:
        return {"channel": self.channel, "pulse": self.pulse, "dwell": self.dwell, "into_s": self.into_s}


@register_fault
@dataclass
class ObstructionFault(Fault):
    name: ClassVar[str] = "afterloader_obstruction"
    summary: ClassVar[str] = "the check cable meets an obstruction: channel aborted, source stays in the safe"
    device_kinds: ClassVar[tuple[str, ...]] = ("afterloader",)
    channel: int | None = None
    pulse: int | None = None
    depth_fraction: float = 0.8

    def apply(self, ctx: FaultContext) -> None:
        _helper(self, ctx).obstruction(self.channel, pulse=self.pulse, depth_fraction=self.depth_fraction)


@register_fault
@dataclass
class WrongChannelLengthFault(Fault):
    name: ClassVar[str] = "afterloader_wrong_channel_length"
    summary: ClassVar[str] = "the check cable meets the channel's end early (CHANNEL_LENGTH)"
    device_kinds: ClassVar[tuple[str, ...]] = ("afterloader",)
    channel: int | None = None
    pulse: int | None = None

    def apply(self, ctx: FaultContext) -> None:
        _helper(self, ctx).wrong_channel_length(self.channel, pulse=self.pulse)


@register_fault
@dataclass
class SourceStuckFault(Fault):
    name: ClassVar[str] = "afterloader_source_stuck"
    summary: ClassVar[str] = (
        "the source sticks at the end of a dwell; emergency retraction after retraction_s"
    )
    device_kinds: ClassVar[tuple[str, ...]] = ("afterloader",)
    channel: int | None = None
    pulse: int | None = None
    dwell: int | None = None
    retraction_s: float | None = None

    def apply(self, ctx: FaultContext) -> None:
        _helper(self, ctx).source_stuck(
            self.channel, pulse=self.pulse, dwell=self.dwell, retraction_s=self.retraction_s
        )


@register_fault
@dataclass
class AfterloaderPowerLossFault(_Where):
    name: ClassVar[str] = "afterloader_power_loss"
    summary: ClassVar[str] = "mains failure: the battery retracts the source (POWER_FAIL)"
    battery_retraction_s: float = 0.0

    def apply(self, ctx: FaultContext) -> None:
        _helper(self, ctx).power_loss(**self._at(), battery_retraction_s=self.battery_retraction_s)


@register_fault
@dataclass
class TimerDiscrepancyFault(_Where):
    name: ClassVar[str] = "afterloader_timer_discrepancy"
    summary: ClassVar[str] = "the secondary timer disagrees with the primary (TIMER)"

    def apply(self, ctx: FaultContext) -> None:
        _helper(self, ctx).timer_discrepancy(**self._at())


@register_fault
@dataclass
class DoorInterlockFailureFault(_Where):
    name: ClassVar[str] = "afterloader_door_interlock_failure"
    summary: ClassVar[str] = "the door opens but the source stays out (NRC IN 96-21; trainer scenario)"

    def apply(self, ctx: FaultContext) -> None:
        _helper(self, ctx).door_interlock_failure(**self._at())
