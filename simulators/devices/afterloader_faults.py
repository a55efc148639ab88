"""The afterloader's own faults, scripted through the shared engine API (for scenarios, tests, the console).

Bind a helper to a running engine (e.g. in a ``DeliverySession`` engine hook) and call its methods on the
simulation thread (engine hooks before the run, bus subscribers, :meth:`DeliveryEngine.schedule_at`
callbacks, scenario faults)::

    def hook(engine):
        faults = AfterloaderFaults(engine, emergency_retraction_s=30.0)
        faults.open_door(channel=2, dwell=3, into_s=1.5)

    DeliverySession(request, engine_hooks=(hook,)).run()

Where a fault acts: ``channel`` (Channel Number), ``pulse`` (PDR, 1-based; default any pulse) and
``dwell`` (1-based dwell of that channel) with ``into_s`` seconds into it; a fault with neither acts now
(or, for the check-cable faults, on the next check-cable run). Every fault is recorded on the bus and in
``DeliveryResult.events`` (FaultInjected), and what the record says follows from the engine's result:

* ``obstruction(channel, depth_fraction=0.8)``: the check cable stops short at that fraction of its run;
  the channel is aborted and the source never leaves the safe; latching interlock ``OBSTRUCTION``, session
  MACHINE. Record: the channel with Delivered Channel Total Time 0 and no safe exit/return, Application
  Setup Check FAILED.
* ``wrong_channel_length(channel)``: the same, the cable meets the channel's end early (code
  ``CHANNEL_LENGTH``).
* ``source_stuck(channel, dwell, retraction_s)``: at the end of the dwell the source neither steps nor
  retracts; latching ``SOURCE_STUCK``, MACHINE; the emergency (hand-crank) retraction takes
  ``retraction_s`` (default the model's ``emergency_retraction_s``): Safe Position Return is that late.
* ``open_door(channel, dwell, into_s)`` / ``close_door()``: the engine's ``DOOR`` interlock retracts a
  source that is out (MACHINE, partial channel: the TMS schedules the remaining dwells as a
  continuation); with the source in the safe the next source-out waits for the door.
* ``power_loss(channel, dwell, into_s, battery_retraction_s)``: mains failure, the battery retracts the
  source; ``POWER_FAIL``, MACHINE, Safe Position Return late by the battery time.
* ``timer_discrepancy(channel, dwell, into_s)``: the secondary timer disagrees; ``TIMER``, MACHINE.
* ``door_interlock_failure(...)``: NRC IN 96-21, the door opens but the source stays out (trainer
  scenario): only recorded, the delivery goes on.

:meth:`at` runs any callable at such a point (``faults.at(lambda: engine.hold("x"), channel=1, dwell=2)``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from simulators.core import events as ev
from simulators.core.engine import DeliveryEngine
from simulators.core.program import ProgramUnit, SegmentKind
from simulators.devices.afterloader import CHECK_CABLE, DWELL

OBSTRUCTION = "OBSTRUCTION"
CHANNEL_LENGTH = "CHANNEL_LENGTH"
SOURCE_STUCK = "SOURCE_STUCK"
POWER_FAIL = "POWER_FAIL"
TIMER = "TIMER"
_CHECK_OUT_SEGMENT = 1  # the check cable's run out (segment 0 is the indexer)


@dataclass
class _Pending:
    """An action waiting for its segment: unit filter, segment chooser, time into the segment."""

    channel: int | None
    pulse: int | None
    dwell: int | None
    into_s: float
    action: Callable[[], None]
    check_cable: bool = False
    at_end: bool = False
    fraction: float | None = None
    done: bool = False


class AfterloaderFaults:
    """Afterloader faults on one engine (see the module docstring for each one's effect)."""

    def __init__(self, engine: DeliveryEngine, *, emergency_retraction_s: float = 30.0) -> None:
        self.engine = engine
        self.emergency_retraction_s = emergency_retraction_s
        self._pending: list[_Pending] = []
        # units already started (a helper may be made mid-session): the engine plays units in program order
        self._unit_index = sum(isinstance(e, ev.UnitStarted) for e in engine.events) - 1
        self._pulse_of: list[int] = _pulses(engine.program.units)
        engine.bus.subscribe(self._on_event, (ev.UnitStarted, ev.SegmentStarted))

    # ------------------------------------------------------------------ faults
    def obstruction(
        self,
        channel: int | None = None,
        *,
        pulse: int | None = None,
        depth_fraction: float = 0.8,
        code: str = OBSTRUCTION,
    ) -> None:
        """The check cable of ``channel`` (default: the next run) stops at ``depth_fraction`` of its run."""
        if not 0.0 <= depth_fraction <= 1.0:
            raise ValueError(f"depth_fraction must be within 0..1, got {depth_fraction!r}")

        def stop() -> None:
            self.engine.device_fault("check_cable", code=code, depth_fraction=depth_fraction)
            self.engine.interlock(code, latching=True)

        self._pending.append(
            _Pending(channel, pulse, None, 0.0, stop, check_cable=True, fraction=depth_fraction)
        )

    def wrong_channel_length(self, channel: int | None = None, *, pulse: int | None = None) -> None:
        """The check cable meets the channel's end before the programmed distal dwell."""
        self.obstruction(channel, pulse=pulse, depth_fraction=0.97, code=CHANNEL_LENGTH)

    def source_stuck(
        self,
        channel: int | None = None,
        *,
        pulse: int | None = None,
        dwell: int | None = None,
        retraction_s: float | None = None,
    ) -> None:
        """At the end of ``dwell`` (default: now) the source sticks; it is retracted by hand later."""
        seconds = self.emergency_retraction_s if retraction_s is None else retraction_s

        def stick() -> None:
            self.engine.device_fault("source_stuck", retraction_s=seconds)
            self.engine.interlock(SOURCE_STUCK, latching=True)

        self._place(stick, channel, pulse, dwell, 0.0, at_end=True)

    def open_door(
        self,
        channel: int | None = None,
        *,
        pulse: int | None = None,
        dwell: int | None = None,
        into_s: float = 0.0,
    ) -> None:
        """The treatment room door opens (the engine's DOOR interlock retracts a source that is out)."""
        self._place(lambda: self.engine.set_door(True), channel, pulse, dwell, into_s)

    def close_door(self) -> None:
        self.engine.set_door(False)

    def power_loss(
        self,
        channel: int | None = None,
        *,
        pulse: int | None = None,
        dwell: int | None = None,
        into_s: float = 0.0,
        battery_retraction_s: float = 0.0,
    ) -> None:
        """Mains failure: radiation off, the battery drives the source home (``battery_retraction_s``)."""

        def fail() -> None:
            self.engine.device_fault("power_loss", retraction_s=battery_retraction_s)
            self.engine.interlock(POWER_FAIL, latching=False)

        self._place(fail, channel, pulse, dwell, into_s)

    def timer_discrepancy(
        self,
        channel: int | None = None,
        *,
        pulse: int | None = None,
        dwell: int | None = None,
        into_s: float = 0.0,
    ) -> None:
        """The secondary timer disagrees with the primary one: radiation off, session ends MACHINE."""

        def trip() -> None:
            self.engine.device_fault("timer_discrepancy", channel=channel, dwell=dwell)
            self.engine.interlock(TIMER, latching=True)

        self._place(trip, channel, pulse, dwell, into_s)

    def door_interlock_failure(
        self,
        channel: int | None = None,
        *,
        pulse: int | None = None,
        dwell: int | None = None,
        into_s: float = 0.0,
    ) -> None:
        """NRC IN 96-21: the door is open but the interlock does not act, the source stays out."""

        def fail() -> None:
            self.engine.device_fault("door_interlock_failure")
            self.engine.bus.publish(
                ev.DoorChanged(
                    machine_id=self.engine.program.machine_id, time_s=self.engine.env.now, is_open=True
                )
            )

        self._place(fail, channel, pulse, dwell, into_s)

    def at(
        self,
        action: Callable[[], None],
        *,
        channel: int | None = None,
        pulse: int | None = None,
        dwell: int | None = None,
        into_s: float = 0.0,
    ) -> None:
        """Run ``action()`` ``into_s`` seconds into ``dwell`` of ``channel`` (``pulse``), or now."""
        self._place(action, channel, pulse, dwell, into_s)

    # ------------------------------------------------------------------ placing
    def _place(
        self,
        action: Callable[[], None],
        channel: int | None,
        pulse: int | None,
        dwell: int | None,
        into_s: float,
        *,
        at_end: bool = False,
    ) -> None:
        if into_s < 0:
            raise ValueError(f"into_s must be >= 0, got {into_s!r}")
        if channel is None and dwell is None and pulse is None:
            self.engine.schedule_at(self.engine.env.now, action)
            return
        self._pending.append(_Pending(channel, pulse, dwell, into_s, action, at_end=at_end))

    def _on_event(self, event: object) -> None:
        if isinstance(event, ev.UnitStarted):
            self._unit_index += 1
            return
        assert isinstance(event, ev.SegmentStarted)
        units = self.engine.program.units
        if not 0 <= self._unit_index < len(units):
            return
        unit = units[self._unit_index]
        pulse = self._pulse_of[self._unit_index]
        segment = unit.segments[event.segment_index]
        for pending in self._pending:
            if pending.done or (pending.channel is not None and pending.channel != unit.number):
                continue
            if pending.pulse is not None and pending.pulse != pulse:
                continue
            if pending.check_cable:
                if event.segment_index != _CHECK_OUT_SEGMENT or segment.limiting_axis != CHECK_CABLE:
                    continue
                delay = (pending.fraction or 0.0) * event.duration_s
            elif pending.dwell is not None:
                if _dwell_number(unit, event.segment_index) != pending.dwell:
                    continue
                delay = event.duration_s if pending.at_end else min(pending.into_s, event.duration_s)
            else:  # a channel (or pulse) without a dwell: its first dwell
                if _dwell_number(unit, event.segment_index) != 1:
                    continue
                delay = event.duration_s if pending.at_end else min(pending.into_s, event.duration_s)
            pending.done = True
            self.engine.schedule_at(event.time_s + delay, pending.action)


def _dwell_number(unit: ProgramUnit, segment_index: int) -> int | None:
    """1-based number of the dwell a segment is (None for transit, check cable, indexer)."""
    count = 0
    for index, segment in enumerate(unit.segments):
        if segment.kind is SegmentKind.BEAM and segment.limiting_axis == DWELL:
            count += 1
            if index == segment_index:
                return count
        elif index == segment_index:
            return None
    return None


def _pulses(units: tuple[ProgramUnit, ...]) -> list[int]:
    """The pulse (1-based) of each unit: a channel number seen again starts a new pulse."""
    pulses, seen, pulse = [], set(), 1
    for unit in units:
        if unit.number in seen:
            pulse += 1
            seen = set()
        seen.add(unit.number)
        pulses.append(pulse)
    return pulses
